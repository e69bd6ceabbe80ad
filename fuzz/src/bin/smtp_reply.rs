//! Fuzzes the SMTP reply parser: the bytes a server sends, cut into lines as the session reads
//! them (at each line feed, a line longer than the session's bound refused), each line parsed by
//! `parse_reply_line` and the lines of one reply joined until one without a `-` after its code.
//! Input: the server's bytes, any of them.

use rebuy::delivery::parse_reply_line;

/// The session's bound on one line (`MAX_LINE` in src/delivery/session.rs).
const MAX_LINE: usize = 8 * 1024;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mut replies = Vec::new();
        let mut text = String::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            if line.len() > MAX_LINE {
                break;
            }
            match parse_reply_line(line) {
                Ok((code, more, line_text)) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&line_text);
                    if !more {
                        replies.push((code, std::mem::take(&mut text)));
                    }
                }
                Err(e) => {
                    std::hint::black_box(e);
                    break;
                }
            }
        }
        std::hint::black_box(replies);
    });
}
