//! Fuzzes the scenario files as `rebuy check` reads them: the YAML tree with locations, then
//! a segment file (`segments:` at the top, conditions parsed inside quoted YAML) or a scenario,
//! with every diagnostic rendered as the CLI prints it. Input: the file's text (UTF-8; other
//! bytes are skipped, as `read_to_string` refuses them before the parser sees anything).

use rebuy::scenario::parse_scenario;
use rebuy::segment::{is_segment_file, parse_segments};
use std::fmt::Write as _;

const PATH: &str = "fuzz.yaml";

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let mut out = String::new();
        match rebuy::yaml::parse(PATH, text) {
            Ok(doc) if is_segment_file(&doc) => {
                let (segments, diags) = parse_segments(PATH, text, &doc);
                for s in &segments {
                    let _ = write!(out, "{} {:?}", s.name, s.condition);
                }
                for d in &diags {
                    let _ = write!(out, "{d}");
                }
            }
            _ => match parse_scenario(PATH, text) {
                Ok(s) => {
                    let _ = write!(out, "{s:?}");
                }
                Err(diags) => {
                    for d in &diags {
                        let _ = write!(out, "{d}");
                    }
                }
            },
        }
        std::hint::black_box(out);
    });
}
