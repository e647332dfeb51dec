//! Writes the fuzzing seed corpus: one valid input per message kind and
//! target, from the fixed federation the fuzz targets use.
//!
//! `cargo run -p konsilium-tests --example fuzz_seeds -- fuzz/corpus`

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    for (target, name, bytes) in konsilium_tests::fuzz::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    println!("wrote seeds under {}", root.display());
    Ok(())
}
