//! YAML and type errors in words: what was expected, what was found, and where.

use granit_parser::{Event, Parser};

/// Whether the error is a YAML size limit (aliases expanded too far).
pub(super) fn is_limit(err: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match err {
        E::Budget { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => true,
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => is_limit(error),
        _ => false,
    }
}

/// The key of a duplicate-key error.
pub(super) fn duplicate_key(err: &serde_saphyr::Error) -> Option<&str> {
    match err {
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => Some(key.as_deref().unwrap_or("?")),
        serde_saphyr::Error::AliasError { error, .. }
        | serde_saphyr::Error::WithSnippet { error, .. } => duplicate_key(error),
        _ => None,
    }
}

/// serde-saphyr's error in the user's words where its own speak of Rust types (`invalid u32`)
/// or of the parser's limits (`Nodes { nodes: 250001 }`): what was expected, with its range,
/// and what was found. `None` when its own message is clear already.
pub(super) fn in_words(err: &serde_saphyr::Error, path: &str, text: &str) -> Option<String> {
    use serde_saphyr::Error as E;
    let found = |location: &serde_saphyr::Location| {
        found_at(text, location.line() as usize, location.column() as usize)
    };
    Some(match err {
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => {
            return in_words(error, path, text);
        }
        E::InvalidScalar { ty, location } => {
            format!(
                "expected {}, found {}",
                expected_words(ty, path),
                found(location)
            )
        }
        E::InvalidBooleanStrict { location } => {
            format!("expected true or false, found {}", found(location))
        }
        E::NullIntoString { location } => {
            format!("expected a string, found {}", found(location))
        }
        E::Unexpected { expected, location } => format!(
            "expected {}, found {}",
            expected_words(expected, path),
            found(location)
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!(
            "expected {}, found {unexpected}",
            expected_words(expected, path)
        ),
        E::ExternallyTaggedEnumExpectedScalarOrMapping { location } => format!(
            "expected exactly one of {} (a mapping), found {}",
            choices(path),
            found(location)
        ),
        E::Budget { breach, .. } => limit_words(breach),
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "its aliases (`*name`) expand into too much data: YAML aliases are limited, so a small \
             file cannot grow into gigabytes in memory; write the repeated parts out"
                .to_string()
        }
        _ => return None,
    })
}

/// A YAML size limit, as a sentence.
pub(super) fn limit_words(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let what = match breach {
        B::Nodes { nodes } => format!(
            "more than {} values (it reached {nodes}, most likely aliases `*name` repeating an anchor)",
            nodes - 1
        ),
        B::Events { events } => format!("more than {} YAML events ({events})", events - 1),
        B::Aliases { aliases } => format!("more than {} aliases (`*name`)", aliases - 1),
        B::Anchors { anchors } => format!("more than {} anchors (`&name`)", anchors - 1),
        B::Depth { depth } => format!("nesting deeper than {} levels", depth - 1),
        B::ScalarBytes { total_scalar_bytes } => {
            format!("{total_scalar_bytes} bytes of text values")
        }
        other => format!("too much of something ({other:?})"),
    };
    format!(
        "the document holds {what}: YAML input is limited so that a small file cannot use all \
         memory; a Ferry resource needs far less"
    )
}

/// The resource kinds to choose from at an enum-valued field.
pub(super) fn choices(path: &str) -> &'static str {
    if path.ends_with("schedule") {
        "daily, weekly, monthly, cron, every"
    } else if path.ends_with("format") {
        "csv, xlsx, pdf"
    } else {
        "the documented keys"
    }
}

/// What a field expects, in words: the type, and the range where the field has one.
pub(super) fn expected_words(ty: &str, path: &str) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    let range = match field {
        "port" => Some("a port number from 1 to 65535"),
        "attempts" | "historyLimit" => Some("a whole number from 1 to 4294967295"),
        "day" => Some("a day of the month from 1 to 31"),
        _ => None,
    };
    let words = match ty.trim_start_matches("a ").trim_start_matches("an ") {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" | "boolean" => "true or false",
        "char" => "a single character",
        "string scalar" | "string" | "str" => "a string",
        "mapping start" | "mapping" | "map" | "struct" => {
            if path.is_empty() {
                "a Ferry resource (a mapping with apiVersion, kind, metadata and spec)"
            } else {
                "a mapping (`key: value` lines)"
            }
        }
        "sequence start" | "sequence" => "a list (`- item` lines or `[a, b]`)",
        other => return range.map_or_else(|| other.to_string(), str::to_string),
    };
    match range {
        Some(r) if !matches!(ty, "string scalar" | "mapping start" | "sequence start") => {
            r.to_string()
        }
        _ => words.to_string(),
    }
}

/// What the YAML holds at a 1-based line and column, in words: a scalar as written (quoted
/// when it was), `a list`, `a mapping`.
pub(super) fn found_at(text: &str, line: usize, col: usize) -> String {
    use granit_parser::ScalarStyle;
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let (l, c) = (span.start.line(), span.start.col() + 1);
        if l > line {
            break;
        }
        if (l, c) != (line, col) {
            continue;
        }
        return match event {
            Event::Scalar(value, style, ..) => {
                let mut shown: String = value.chars().take(40).collect();
                if value.chars().count() > 40 {
                    shown.push('…');
                }
                match style {
                    ScalarStyle::Plain if value.is_empty() || value == "~" || value == "null" => {
                        "nothing (an empty value)".to_string()
                    }
                    ScalarStyle::Plain => format!("`{shown}`"),
                    _ => format!("the text {shown:?}"),
                }
            }
            Event::SequenceStart(..) => "a list".to_string(),
            Event::MappingStart(..) => "a mapping".to_string(),
            Event::Alias(..) => "an alias".to_string(),
            _ => continue,
        };
    }
    "something else".to_string()
}

/// The first syntax error of a document, if any: (line, column, message).
pub(super) fn syntax_error(text: &str) -> Option<(usize, usize, String)> {
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        if let Err(e) = event {
            let m = e.marker();
            let mut col = m.col() + 1;
            let info = e.info().to_string();
            // The parser stops after a tab it refuses: point at the tab.
            if info.contains("tab")
                && col > 1
                && text
                    .lines()
                    .nth(m.line().saturating_sub(1))
                    .and_then(|l| l.chars().nth(col - 2))
                    == Some('\t')
            {
                col -= 1;
            }
            return Some((m.line(), col, info));
        }
    }
    None
}
