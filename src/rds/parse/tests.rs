use super::*;

fn one(text: &str) -> Item {
    let items = parse_items(text).unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    items.into_iter().next().unwrap()
}

#[test]
fn quoted_and_bare_values() {
    let item = one(r#"type=file slot="pvc-1" slot-default="" fs=- a="x\"y\\z\_w\41""#);
    assert_eq!(item.get_str("type"), Some("file"));
    assert_eq!(item.get_str("slot"), Some("pvc-1"));
    assert_eq!(item.get_str("slot-default"), Some(""));
    assert_eq!(item.get_str("fs"), Some("-"));
    assert_eq!(item.get_str("a"), Some("x\"y\\z wA"));
    assert_eq!(item.get_str("absent"), None);
    let keys: Vec<&str> = item.fields().map(|(k, _)| k).collect();
    assert_eq!(keys, ["type", "slot", "slot-default", "fs", "a"]);
}

#[test]
fn quoted_values_keep_spaces_and_equals() {
    let item = one(r#"comment="a b=c" next=1"#);
    assert_eq!(item.get_str("comment"), Some("a b=c"));
    assert_eq!(item.get_u64("next"), Ok(1));
}

#[test]
fn grouped_integers_and_values_with_spaces() {
    let item = one("size=53 687 091 200 type=.img file last-modified=2025-11-11 14:32:41");
    assert_eq!(item.get_str("size"), Some("53 687 091 200"));
    assert_eq!(item.get_u64("size"), Ok(53_687_091_200));
    assert_eq!(item.get_str("type"), Some(".img file"));
    assert_eq!(item.get_str("last-modified"), Some("2025-11-11 14:32:41"));
    assert!(item.get_u64("type").is_err());
}

#[test]
fn a_value_wrapped_across_lines_is_joined() {
    let item = one("size=53 687\n               091 200 free=1");
    assert_eq!(item.get_u64("size"), Ok(53_687_091_200));
    assert_eq!(item.get_u64("free"), Ok(1));
}

#[test]
fn flags_header_numbers_and_flags() {
    let text = "Flags: X - disabled; R - running\n \
                0 X type=file slot=\"a\"\n\n \
                1 XR type=file slot=\"b\"\n \
                2 X R type=file slot=\"c\"\n \
                3   type=file slot=\"d\"\n";
    let items = parse_items(text).unwrap();
    assert_eq!(items.len(), 4);
    let summary: Vec<(Option<u64>, &str, Option<&str>)> = items
        .iter()
        .map(|i| (i.number(), i.flags(), i.get_str("slot")))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(0), "X", Some("a")),
            (Some(1), "XR", Some("b")),
            (Some(2), "XR", Some("c")),
            (Some(3), "", Some("d")),
        ]
    );
    assert!(items[0].has_flag('X'));
    assert!(!items[3].has_flag('X'));
}

#[test]
fn comments_are_captured() {
    let items = parse_items(" 0   ;;; made by csi\n     type=file slot=\"a\"\n").unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].comment(), Some("made by csi"));
    assert_eq!(items[0].get_str("slot"), Some("a"));
}

#[test]
fn unnumbered_items_split_on_blank_lines_and_column_zero() {
    let items = parse_items("a=1\n   b=2\n\n   c=3\nd=4\n").unwrap();
    let fields: Vec<Vec<(&str, &str)>> = items.iter().map(|i| i.fields().collect()).collect();
    assert_eq!(
        fields,
        [
            vec![("a", "1"), ("b", "2")],
            vec![("c", "3")],
            vec![("d", "4")]
        ]
    );
}

#[test]
fn deep_indented_digit_line_is_a_continuation_not_an_item() {
    let items = parse_items(" 9  size=1 000\n               200 x=1\n10  y=2\n").unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].get_u64("size"), Ok(1_000_200));
    assert_eq!(items[0].get_str("x"), Some("1"));
    assert_eq!(items[1].number(), Some(10));
}

#[test]
fn typed_getters() {
    let item = one("a=yes b=no c=true d=FALSE e=maybe f=50.0GiB g=1.3KiB h=7 949 127 950 336 i=-");
    assert_eq!(item.get_bool("a"), Ok(true));
    assert_eq!(item.get_bool("b"), Ok(false));
    assert_eq!(item.get_bool("c"), Ok(true));
    assert_eq!(item.get_bool("d"), Ok(false));
    assert!(matches!(
        item.get_bool("e"),
        Err(FieldError::Invalid { .. })
    ));
    assert_eq!(item.get_bytes("f"), Ok(50 << 30));
    assert!(matches!(
        item.get_bytes("g"),
        Err(FieldError::Invalid { .. })
    ));
    assert_eq!(item.get_bytes("h"), Ok(7_949_127_950_336));
    assert!(item.get_u64("i").is_err());
    assert!(item.get_bytes("zzz").unwrap_err().is_missing());
    assert!(!item.get_bytes("i").unwrap_err().is_missing());
}

#[test]
fn error_text_is_not_read_as_an_empty_list() {
    for text in [
        "failure: no such item",
        "bad command name x (line 1 column 7)",
        "syntax error (line 1 column 5)",
    ] {
        assert!(
            matches!(
                parse_items(text),
                Err(ParseError::UnexpectedWord { line: 1, .. })
            ),
            "{text}"
        );
    }
    assert_eq!(parse_items("").unwrap(), Vec::<Item>::new());
    assert_eq!(
        parse_items("Flags: X - disabled\n\n").unwrap(),
        Vec::<Item>::new()
    );
}

#[test]
fn malformed_tokens_are_errors() {
    assert!(matches!(
        parse_items("slot=\"abc"),
        Err(ParseError::UnterminatedQuote { line: 1, .. })
    ));
    assert!(matches!(
        parse_items("slot=\"abc\\"),
        Err(ParseError::UnterminatedQuote { .. })
    ));
    assert!(matches!(
        parse_items("=x"),
        Err(ParseError::InvalidKey { .. })
    ));
    assert!(matches!(
        parse_items("a/b=x"),
        Err(ParseError::InvalidKey { .. })
    ));
    assert!(matches!(
        parse_items("a=b\"c"),
        Err(ParseError::StrayQuote { .. })
    ));
    assert!(matches!(
        parse_items("a=1 \"b\""),
        Err(ParseError::StrayQuote { .. })
    ));
    assert!(matches!(
        parse_items("a=\"x\"y"),
        Err(ParseError::TextAfterQuote { .. })
    ));
    assert!(matches!(
        parse_items("a=1\n  a=2"),
        Err(ParseError::DuplicateKey { line: 2, .. })
    ));
    assert!(matches!(
        parse_items("a=\"\\ff\""),
        Err(ParseError::InvalidUtf8 { .. })
    ));
}

#[test]
fn crlf_and_tabs_are_tolerated() {
    let items = parse_items("a=1\r\n\tb=\"2\"\r\n").unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].get_str("b"), Some("2"));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(text in "(?s).{0,200}") {
        let _ = parse_items(&text);
    }

    #[test]
    fn never_panics_on_routeros_like_text(
        text in "[ 0-9a-zA-Z=\"\\\\;:.\n\t-]{0,300}"
    ) {
        if let Ok(items) = parse_items(&text) {
            for item in &items {
                for (key, _) in item.fields() {
                    let _ = item.get_bytes(key);
                    let _ = item.get_u64(key);
                    let _ = item.get_bool(key);
                }
            }
        }
    }
}
