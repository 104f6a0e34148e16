//! The Caption MNIST caption grammar (`docs/CAPTION_MNIST.md`, "Captions" and "Parsing and
//! judging"): regions, colours, the three unit templates, and the parser that decides
//! whether a caption is valid.

/// Canvas side in pixels.
pub const SIDE: usize = 64;

/// Where a digit sits: four 32×32 quadrants, or the 32×32 centre square at (16, 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    UpperLeft,
    UpperRight,
    LowerLeft,
    LowerRight,
    Center,
}

impl Region {
    pub const ALL: [Region; 5] = [Self::UpperLeft, Self::UpperRight, Self::LowerLeft, Self::LowerRight, Self::Center];
    pub const QUADRANTS: [Region; 4] = [Self::UpperLeft, Self::UpperRight, Self::LowerLeft, Self::LowerRight];

    pub fn name(self) -> &'static str {
        match self {
            Self::UpperLeft => "upper left",
            Self::UpperRight => "upper right",
            Self::LowerLeft => "lower left",
            Self::LowerRight => "lower right",
            Self::Center => "center",
        }
    }
    /// Top-left corner `(x, y)` of the region's 32×32 square.
    pub fn origin(self) -> (usize, usize) {
        match self {
            Self::UpperLeft => (0, 0),
            Self::UpperRight => (32, 0),
            Self::LowerLeft => (0, 32),
            Self::LowerRight => (32, 32),
            Self::Center => (16, 16),
        }
    }
}

/// The four digit colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    White,
    Red,
    Green,
    Blue,
}

impl Colour {
    pub const ALL: [Colour; 4] = [Self::White, Self::Red, Self::Green, Self::Blue];
    pub fn name(self) -> &'static str {
        match self {
            Self::White => "white",
            Self::Red => "red",
            Self::Green => "green",
            Self::Blue => "blue",
        }
    }
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Self::White => [255, 255, 255],
            Self::Red => [255, 0, 0],
            Self::Green => [0, 255, 0],
            Self::Blue => [0, 0, 255],
        }
    }
}

/// One digit of a pair: what the caption says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit {
    pub region: Region,
    pub colour: Colour,
    pub digit: u8,
}

impl Unit {
    /// The unit in caption form `form` (0, 1 or 2 — the spec's three templates).
    pub fn phrase(&self, form: usize) -> String {
        let (c, d, r) = (self.colour.name(), self.digit, self.region.name());
        match form {
            0 if self.region == Region::Center => format!("a {c} {d} in the {r}"),
            0 => format!("a {c} {d} on the {r}"),
            1 => format!("the {r} has a {c} {d}"),
            _ => format!("{c} digit {d} at the {r}"),
        }
    }
}

/// Why a caption is not valid Caption MNIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NoFinalStop,
    BadUnit(String),
    TooManyUnits(usize),
    RepeatedRegion(&'static str),
    CenterWithQuadrant,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoFinalStop => write!(f, "caption does not end with '.'"),
            Self::BadUnit(u) => write!(f, "'{u}' is not a unit of the grammar"),
            Self::TooManyUnits(n) => write!(f, "{n} units (at most 4)"),
            Self::RepeatedRegion(r) => write!(f, "region '{r}' appears twice"),
            Self::CenterWithQuadrant => write!(f, "'center' together with a quadrant"),
        }
    }
}

/// Parses a caption into its units, enforcing every rule of the spec.
pub fn parse_caption(caption: &str) -> Result<Vec<Unit>, ParseError> {
    let body = caption.strip_suffix('.').ok_or(ParseError::NoFinalStop)?;
    let units = body.split(", ").map(parse_unit).collect::<Result<Vec<_>, _>>()?;
    if units.len() > 4 {
        return Err(ParseError::TooManyUnits(units.len()));
    }
    for (i, u) in units.iter().enumerate() {
        if units[..i].iter().any(|v| v.region == u.region) {
            return Err(ParseError::RepeatedRegion(u.region.name()));
        }
    }
    if units.len() > 1 && units.iter().any(|u| u.region == Region::Center) {
        return Err(ParseError::CenterWithQuadrant);
    }
    Ok(units)
}

fn parse_unit(text: &str) -> Result<Unit, ParseError> {
    unit_of(text).ok_or_else(|| ParseError::BadUnit(text.to_string()))
}

fn unit_of(text: &str) -> Option<Unit> {
    let colour = |w: &str| Colour::ALL.into_iter().find(|c| c.name() == w);
    let digit = |w: &str| (w.len() == 1).then(|| w.as_bytes()[0]).filter(u8::is_ascii_digit).map(|b| b - b'0');
    let region = |w: &[&str]| Region::ALL.into_iter().find(|r| r.name() == w.join(" "));
    let words: Vec<&str> = text.split(' ').collect();
    let (c, d, region) = match words.as_slice() {
        // a {colour} {digit} on the {quadrant} | a {colour} {digit} in the center
        ["a", c, d, prep, "the", r @ ..] => {
            let region = region(r)?;
            let want = if region == Region::Center { "in" } else { "on" };
            (*prep == want).then_some((c, d, region))?
        }
        // the {region} has a {colour} {digit}
        ["the", r @ .., "has", "a", c, d] => (c, d, region(r)?),
        // {colour} digit {digit} at the {region}
        [c, "digit", d, "at", "the", r @ ..] => (c, d, region(r)?),
        _ => return None,
    };
    Some(Unit { region, colour: colour(c)?, digit: digit(d)? })
}
