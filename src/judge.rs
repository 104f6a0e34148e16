//! The rule-based half of the Caption MNIST judge (CAPTION_MNIST.md): which regions of an
//! image hold a digit, and in which colour (from the mean RGB of the region's lit pixels).
//! The digit classifier that reads the numerals is the other half.

use crate::data::caption_mnist::{Colour, Region, SIDE};

/// A pixel is lit when its brightest channel reaches this.
pub const LIT: u8 = 96;
/// A region holds a digit when it has at least this many lit pixels.
pub const MIN_LIT: usize = 15;

fn lit(image: &[u8], x: usize, y: usize) -> Option<[u8; 3]> {
    let p = &image[(y * SIDE + x) * 3..(y * SIDE + x) * 3 + 3];
    (p.iter().copied().max().unwrap_or(0) >= LIT).then(|| [p[0], p[1], p[2]])
}

/// Lit pixels of `region` and the nearest of the four colours to their mean.
fn read_region(image: &[u8], region: Region) -> (usize, Colour) {
    let (ox, oy) = region.origin();
    let (mut n, mut sum) = (0usize, [0f64; 3]);
    for y in oy..oy + 32 {
        for x in ox..ox + 32 {
            if let Some(p) = lit(image, x, y) {
                n += 1;
                (0..3).for_each(|c| sum[c] += p[c] as f64);
            }
        }
    }
    let mean = sum.map(|s| s / n.max(1) as f64);
    let colour = Colour::ALL
        .into_iter()
        .min_by(|a, b| {
            let d = |c: Colour| c.rgb().iter().zip(&mean).map(|(&v, m)| (v as f64 - m).powi(2)).sum::<f64>();
            d(*a).total_cmp(&d(*b))
        })
        .expect("four colours");
    (n, colour)
}

/// The regions that hold a digit, each with its colour. A centre digit never reaches
/// the outer 16-pixel band, quadrant digits do: that decides between the two layouts.
pub fn read_layout(image: &[u8]) -> Vec<(Region, Colour)> {
    let outside_centre = (0..SIDE)
        .flat_map(|y| (0..SIDE).map(move |x| (x, y)))
        .filter(|&(x, y)| !(16..48).contains(&x) || !(16..48).contains(&y))
        .filter(|&(x, y)| lit(image, x, y).is_some())
        .count();
    let regions: &[Region] = if outside_centre >= MIN_LIT { &Region::QUADRANTS } else { &[Region::Center] };
    regions
        .iter()
        .filter_map(|&r| {
            let (n, colour) = read_region(image, r);
            (n >= MIN_LIT).then_some((r, colour))
        })
        .collect()
}
