//! Accuracy of a judge file's digit classifier on the held-out test digits.
//!
//!     cargo run --release --example judge_accuracy -- assets/judge.safetensors
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("judge file missing")?;
    let device = mxq::cpu();
    let judge = mxq::eval::judge::Judge::from_bytes(std::fs::read(path)?, &device)?;
    let digits = mxq::data::Digits::load_dir(std::path::Path::new("data/mnist"))?;
    let test = digits.subset(mxq::data::caption_mnist::TRAIN_DIGITS..digits.len());
    let acc = mxq::eval::digit_classifier::accuracy(&judge.classifier, &test, &device);
    println!("{{\"recorded\": {}, \"now\": {acc}}}", judge.test_accuracy);
    Ok(())
}
