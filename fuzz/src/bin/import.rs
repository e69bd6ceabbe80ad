//! Fuzzes the importers: a CSV or JSON Lines file read into records as `rebuy import` reads
//! it, each record validated as a customer, an order row, a whole order and an event, and (from
//! JSON Lines) mapped as a Shopify `orders/create` payload and validated as the webhook does.
//! Input: one byte choosing the format (`j`: JSON Lines, anything else: CSV), then the file.
//! The reader only opens paths, so each input is written to a file in the temporary folder
//! first (`$TMPDIR`, one file per fuzzer process, rewritten for every input; `scripts/fuzz.sh`
//! points `TMPDIR` into `target/fuzz-out`).

use indicatif::ProgressBar;
use rebuy::import::shopify::map_order;
use rebuy::import::{
    order_from_record, parse_customer, parse_event, parse_order_row, ChunkReader, Format, Record,
};
use std::collections::BTreeMap;

fn record(fields: serde_json::Map<String, serde_json::Value>) -> Record {
    Record {
        line: 1,
        fields: fields.into_iter().collect::<BTreeMap<_, _>>(),
    }
}

fn main() {
    let path = std::env::temp_dir().join(format!("rebuy-fuzz-import-{}", std::process::id()));
    let zone = chrono_tz::Asia::Tokyo;

    afl::fuzz!(|data: &[u8]| {
        let Some((&selector, file)) = data.split_first() else {
            return;
        };
        let format = if selector == b'j' {
            Format::Jsonl
        } else {
            Format::Csv
        };
        if std::fs::write(&path, file).is_err() {
            return;
        }
        let Ok(mut reader) = ChunkReader::open(&path, format, ProgressBar::hidden()) else {
            return;
        };
        while let Ok(Some(chunk)) = reader.next_chunk() {
            for r in &chunk {
                let _ = std::hint::black_box(parse_customer(r).map_err(|e| e.to_string()));
                let _ = std::hint::black_box(parse_order_row(r, zone));
                let _ = std::hint::black_box(order_from_record(r, zone));
                let _ = std::hint::black_box(parse_event(r, zone));
                if format == Format::Jsonl {
                    let payload = serde_json::Value::Object(r.fields.clone().into_iter().collect());
                    for consent in [true, false] {
                        if let Ok(mapped) = map_order(&payload, consent) {
                            let _ = std::hint::black_box(parse_customer(&record(mapped.customer)));
                            let _ = std::hint::black_box(order_from_record(
                                &record(mapped.order),
                                zone,
                            ));
                        }
                    }
                }
            }
        }
        std::hint::black_box(&reader.unreadable);
    });
    // AFL ends a persistent process after a number of inputs; a crash leaves the file behind.
    let _ = std::fs::remove_file(&path);
}
