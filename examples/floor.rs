//! The floor for feed parsing: the `csv` crate alone reading files into raw
//! records, nothing converted. `bench/run.sh` compares `relance check` with it.
//!
//! cargo run --release --example floor -- data/invoices.csv data/export_fr.csv

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rows = 0u64;
    let mut bytes = 0u64;
    for path in std::env::args().skip(1) {
        let delimiter = if std::fs::read(&path)?
            .split(|b| *b == b'\n')
            .next()
            .is_some_and(|h| h.contains(&b';'))
        {
            b';'
        } else {
            b','
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .from_path(&path)?;
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record)? {
            rows += 1;
            bytes += record.as_slice().len() as u64;
        }
    }
    println!("{rows} records, {bytes} bytes of fields");
    Ok(())
}
