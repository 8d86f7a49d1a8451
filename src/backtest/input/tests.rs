//! Unit tests of `backtest::input`.

use super::*;
use std::io::Write;

#[test]
fn a_line_longer_than_the_cap_is_cut_and_the_next_lines_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    // Longer than the read buffer, so it straddles fills.
    let long = "x".repeat(3 * READ_BUFFER + 17);
    std::fs::write(&a, format!("one\n{long}\ntwo\n{}\nthree", "y".repeat(150))).unwrap();
    let inputs = Inputs::new(vec![a]).unwrap().quiet().cap_lines(99);
    let mut got = Vec::new();
    inputs
        .for_each_line(|l, at| got.push((l.len(), l[0], at.line)))
        .unwrap();
    assert_eq!(
        got,
        [
            (3, b'o', 1),
            (100, b'x', 2),
            (3, b't', 3),
            (100, b'y', 4),
            (5, b't', 5)
        ]
    );
}

#[test]
fn read_line_capped_keeps_the_cap_and_consumes_the_line() {
    let text = format!("{}\nb\n", "a".repeat(100));
    let mut r = io::BufReader::with_capacity(8, text.as_bytes());
    let mut buf = Vec::new();
    assert_eq!(
        crate::event::read_line_capped(&mut r, &mut buf, 10).unwrap(),
        101
    );
    assert_eq!(buf, b"aaaaaaaaaa");
    buf.clear();
    assert_eq!(
        crate::event::read_line_capped(&mut r, &mut buf, 10).unwrap(),
        2
    );
    assert_eq!(buf, b"b\n");
    buf.clear();
    assert_eq!(
        crate::event::read_line_capped(&mut r, &mut buf, 10).unwrap(),
        0
    );
}

/// Leading white space and a byte-order mark are not part of the event:
/// the cap counts from after them, so an event within the limit is kept
/// whole, and a longer one still keeps one byte past it (oversized).
#[test]
fn read_line_capped_keeps_the_cap_after_the_leading_white_space() {
    let text = "   \u{feff}  0123456789\n \t0123456789abc\n".to_string();
    let mut r = io::BufReader::with_capacity(4, text.as_bytes());
    let mut buf = Vec::new();
    crate::event::read_line_capped(&mut r, &mut buf, 11).unwrap();
    assert_eq!(crate::event::trim_line(&buf), b"0123456789");
    buf.clear();
    crate::event::read_line_capped(&mut r, &mut buf, 11).unwrap();
    assert_eq!(crate::event::trim_line(&buf), b"0123456789a");
}

/// As [`read_line_capped_keeps_the_cap_after_the_leading_white_space`], for
/// the history tools' reader, also for a line across a buffer fill.
#[test]
fn the_line_cap_counts_from_after_the_leading_white_space() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lead.jsonl");
    let first = "a".repeat((1 << 20) - 5);
    let text = format!(
        "{first}\n        \u{feff}  0123456789abcdef\n   0123456789abcdefg\n\u{feff}0123456789abcdef\n"
    );
    std::fs::write(&p, text).unwrap();
    let inputs = Inputs::new(vec![p]).unwrap().quiet().cap_lines(16);
    let mut got = Vec::new();
    inputs
        .for_each_line(|l, _| got.push(String::from_utf8_lossy(l).into_owned()))
        .unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].len(), 17);
    assert_eq!(
        got[1..],
        ["0123456789abcdef", "0123456789abcdefg", "0123456789abcdef"]
    );
}

#[test]
fn reads_plain_and_gzip_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    std::fs::write(&a, b"one\n\n  two  \r\n").unwrap();
    // A gzip file with no .gz suffix, made of two concatenated members.
    let b = dir.path().join("b.data");
    let mut bytes = Vec::new();
    for part in [&b"three\n"[..], &b"four"[..]] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(part).unwrap();
        bytes.extend(enc.finish().unwrap());
    }
    std::fs::write(&b, bytes).unwrap();
    let inputs = Inputs::new(vec![a, b]).unwrap().quiet();
    let mut got = Vec::new();
    let stats = inputs
        .for_each_line(|l, at| got.push((String::from_utf8_lossy(l).into_owned(), at)))
        .unwrap();
    let names: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["one", "two", "three", "four"]);
    assert_eq!(got[1].1, LineRef { file: 0, line: 3 });
    assert_eq!(got[3].1, LineRef { file: 1, line: 2 });
    assert_eq!(stats.lines, 4);
    assert_eq!(stats.files, 2);
}

#[test]
fn lines_across_buffer_fills_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.jsonl");
    // About 3 MiB: lines straddle the 1 MiB buffer fills; no final newline.
    let want: Vec<String> = (0..30_000)
        .map(|i| format!("{i}:{}", "x".repeat(i % 197)))
        .collect();
    std::fs::write(&p, want.join("\n")).unwrap();
    let inputs = Inputs::new(vec![p]).unwrap().quiet();
    let mut got = Vec::new();
    let stats = inputs
        .for_each_line(|l, at| {
            assert_eq!(at.line as usize, got.len() + 1);
            got.push(String::from_utf8(l.to_vec()).unwrap());
        })
        .unwrap();
    assert_eq!(stats.lines, 30_000);
    assert!(got == want, "lines differ");
}

#[test]
fn a_utf16_file_is_refused_with_the_conversion_to_make() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"id":"a","type":"order","ts":1}"#;
    let le: Vec<u8> = line.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = line.encode_utf16().flat_map(u16::to_be_bytes).collect();
    for (name, bytes) in [
        ("bom-le", [&[0xFF, 0xFE][..], &le].concat()),
        ("bom-be", [&[0xFE, 0xFF][..], &be].concat()),
        ("le", le.clone()),
        ("be", be),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let inputs = Inputs::new(vec![p]).unwrap().quiet();
        let err = inputs.for_each_line(|_, _| {}).unwrap_err();
        assert!(matches!(err, InputError::Utf16 { .. }), "{name}: {err}");
        assert!(err.to_string().contains("iconv -f UTF-16"), "{err}");
    }
    // UTF-8 (with its BOM, or a garbled first line) is read.
    let p = dir.path().join("utf8");
    std::fs::write(&p, format!("\u{feff}{line}\nx\0y\n{line}\n")).unwrap();
    let inputs = Inputs::new(vec![p]).unwrap().quiet();
    assert_eq!(inputs.for_each_line(|_, _| {}).unwrap().lines, 3);
}

/// Another compression, a zip archive or one JSON array is refused with the
/// command that makes JSONL of it, instead of every line counted invalid.
#[test]
fn other_formats_are_refused_with_the_conversion_to_make() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"id":"a","type":"order","ts":1}"#;
    let mut gz_array = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    write!(gz_array, "[{line},\n{line}]").unwrap();
    for (name, bytes, convert) in [
        ("b.bz2", b"BZh91AY&SY\x00\x01".to_vec(), "bzcat "),
        ("x.xz", b"\xFD7zXZ\x00\x00\x04".to_vec(), "xzcat "),
        ("z.zst", b"\x28\xB5\x2F\xFD\x04\x58".to_vec(), "zstdcat "),
        ("a.zip", b"PK\x03\x04\x14\x00".to_vec(), "unzip -p "),
        (
            "a.json",
            format!("[{line},{line}]").into_bytes(),
            "jq -c '.[]' ",
        ),
        (
            "p.json",
            format!("[\n  {line},\n  {line}\n]\n").into_bytes(),
            "jq -c '.[]' ",
        ),
        (
            "bom.json",
            format!("\u{feff}[{line}]").into_bytes(),
            "jq -c '.[]' ",
        ),
        ("a.json.gz", gz_array.finish().unwrap(), "| jq -c '.[]' "),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let inputs = Inputs::new(vec![p.clone()]).unwrap().quiet();
        let err = inputs.for_each_line(|_, _| {}).unwrap_err();
        assert!(matches!(err, InputError::Format { .. }), "{name}: {err}");
        assert!(err.to_string().contains(convert), "{name}: {err}");
        // The whole command, as it would be run (through zcat for gzip).
        let tool = convert.trim_start_matches("| ").trim_end();
        let whole = if name.ends_with(".gz") {
            format!("zcat {} | {tool}", p.display())
        } else {
            format!("{tool} {}", p.display())
        };
        assert!(
            err.to_string().contains(&whole),
            "{name}: {err} (not {whole})"
        );
        let small = read_text(&p).unwrap_err().to_string();
        assert!(small.contains(&whole), "{name}: {small} (not {whole})");
    }
    // JSONL whose first line is a bad array line is still JSONL: one
    // invalid line, the rest read.
    let p = dir.path().join("ok.jsonl");
    std::fs::write(&p, format!("[1,2]\n{line}\n")).unwrap();
    let inputs = Inputs::new(vec![p]).unwrap().quiet();
    assert_eq!(inputs.for_each_line(|_, _| {}).unwrap().lines, 2);
}

/// Small files (transitions, labels) are read as history is: gzip by
/// content, a UTF-8 byte-order mark dropped.
#[test]
fn small_text_files_take_gzip_and_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"a\":1}\n{\"a\":2}\n";
    let plain = dir.path().join("t.jsonl");
    std::fs::write(&plain, format!("\u{feff}{text}")).unwrap();
    assert_eq!(read_text(&plain).unwrap(), text);
    let gz = dir.path().join("t.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    write!(enc, "\u{feff}{text}").unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    assert_eq!(read_text(&gz).unwrap(), text);
    let bad = dir.path().join("latin1");
    std::fs::write(&bad, b"{\"a\":\"caf\xE9\"}\n").unwrap();
    assert!(read_text(&bad)
        .unwrap_err()
        .to_string()
        .contains("not UTF-8"));
}

#[test]
fn a_missing_file_names_its_path() {
    let inputs = Inputs::new(vec![PathBuf::from("/nonexistent/x.jsonl")])
        .unwrap()
        .quiet();
    let err = inputs.for_each_line(|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.jsonl"), "{err}");
}

#[test]
fn a_truncated_gzip_file_is_an_error_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..10_000 {
        writeln!(enc, "line {i}").unwrap();
    }
    let bytes = enc.finish().unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let inputs = Inputs::new(vec![p]).unwrap().quiet();
    let err = inputs.for_each_line(|_, _| {}).unwrap_err();
    assert!(matches!(err, InputError::Read { .. }), "{err}");
    assert!(
        err.to_string().contains("truncated or corrupt .gz"),
        "{err}"
    );
}

#[test]
fn a_directory_is_named_as_such_and_errors_print_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs::new(vec![dir.path().to_path_buf()]).unwrap().quiet();
    let err = inputs.for_each_line(|_, _| {}).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("it is a directory"), "{text}");
    assert!(!text.contains(".gz"), "{text}");
    // The cause is in the message and not also a `source` (which the
    // CLI would print a second time).
    assert!(std::error::Error::source(&err).is_none(), "{text}");
    let missing = Inputs::new(vec![PathBuf::from("/nonexistent/x.jsonl")])
        .unwrap()
        .quiet()
        .for_each_line(|_, _| {})
        .unwrap_err();
    assert!(std::error::Error::source(&missing).is_none(), "{missing}");
}

#[test]
fn no_inputs_is_an_error() {
    assert!(matches!(Inputs::new(vec![]), Err(InputError::Empty)));
}
