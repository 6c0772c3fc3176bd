//! Field positions inside a YAML document: line and column of each field path, and of a
//! character inside a scalar value (for a query's offending token).

use std::collections::HashMap;

use granit_parser::{Event, Parser};

/// The source span (start and end character index) and style of the scalar at `field_path`.
pub(super) fn scalar_span(
    text: &str,
    field_path: &str,
) -> Option<(usize, usize, granit_parser::ScalarStyle)> {
    let mut found = None;
    walk(text, 0, |path, span, style| {
        if path == field_path {
            found = Some((span.start.index(), span.end.index(), style));
        }
        found.is_some()
    });
    found
}

/// Where the character `target` of a scalar's value sits in the source, (line, column) within
/// `text`. The value is aligned with its source greedily: each visible character of the value
/// is the next equal character of the source, so a block's indentation, folded line breaks,
/// quotes and escapes are stepped over.
pub(super) fn position_in_scalar(
    text: &str,
    start: usize,
    end: usize,
    style: granit_parser::ScalarStyle,
    value: &str,
    target: usize,
) -> (usize, usize) {
    use granit_parser::ScalarStyle;
    let source: Vec<char> = text.chars().collect();
    let end = end.min(source.len());
    let mut i = start.min(end);
    match style {
        // Content starts on the line after the `|` or `>` header (and its comment), when the
        // span starts at the header.
        ScalarStyle::Literal | ScalarStyle::Folded if matches!(source.get(i), Some('|' | '>')) => {
            while i < end && source[i] != '\n' {
                i += 1;
            }
            i = (i + 1).min(end);
        }
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => i = (i + 1).min(end),
        _ => {}
    }
    let mut at = i;
    for (k, c) in value.chars().enumerate() {
        if c.is_whitespace() {
            if i < end && source[i].is_whitespace() {
                at = i;
                i += 1;
            }
        } else if let Some(j) = (i..end).find(|&j| source[j] == c) {
            at = j;
            i = j + 1;
        }
        if k == target {
            break;
        }
    }
    if target >= value.chars().count() {
        at = i.min(end.saturating_sub(1)).max(start);
    }
    let before = &source[..at];
    let line = before.iter().filter(|&&c| c == '\n').count() + 1;
    let col = at - before.iter().rposition(|&c| c == '\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

pub(super) enum Frame {
    Map {
        path: String,
        /// The key whose value comes next, with the key's position.
        key: Option<(String, (usize, usize))>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

/// Walks one document's YAML events, recording for every field path
/// (`spec.deliverTo[0].target`) the line and column of its value (scalars) or key
/// (collections). On a syntax error, the positions seen so far.
pub(super) fn scan_positions(text: &str, line_offset: usize) -> HashMap<String, (usize, usize)> {
    walk(text, line_offset, |_, _, _| false)
}

/// The one walk over a document's events behind [`scan_positions`] and [`scalar_span`]: keeps
/// each node's field path and records its position (lines shifted by `line_offset`); `scalar`
/// sees every scalar value with its path, span and style, and ends the walk by returning true.
fn walk(
    text: &str,
    line_offset: usize,
    mut scalar: impl FnMut(&str, &granit_parser::Span, granit_parser::ScalarStyle) -> bool,
) -> HashMap<String, (usize, usize)> {
    let mut parser = Parser::new_from_str(text);
    let mut positions = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(Ok((event, span))) = parser.next_event() {
        let pos = (span.start.line() + line_offset, span.start.col() + 1);
        match event {
            Event::Scalar(value, style, ..) => {
                let path = node(&mut positions, &mut stack, pos, false, Some(value.as_ref()));
                if scalar(&path, &span, style) {
                    break;
                }
            }
            Event::UnresolvedAlias(value) => {
                node(&mut positions, &mut stack, pos, false, Some(value.as_ref()));
            }
            Event::Alias(_) => {
                node(&mut positions, &mut stack, pos, false, Some("*"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = node(&mut positions, &mut stack, pos, true, None);
                if matches!(event, Event::MappingStart(..)) {
                    stack.push(Frame::Map { path, key: None });
                } else {
                    stack.push(Frame::Seq { path, index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::DocumentEnd => break,
            _ => {}
        }
    }
    positions
}

/// Records one node; returns its path. `key_text` is the scalar text (used when the node is
/// a mapping key).
pub(super) fn node(
    positions: &mut HashMap<String, (usize, usize)>,
    stack: &mut [Frame],
    pos: (usize, usize),
    collection: bool,
    key_text: Option<&str>,
) -> String {
    let Some(frame) = stack.last_mut() else {
        return String::new();
    };
    match frame {
        Frame::Map { path, key } => match key.take() {
            None => {
                // This node is a key.
                *key = Some((key_text.unwrap_or("?").to_string(), pos));
                String::new()
            }
            Some((k, key_at)) => {
                let child = if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                };
                let at = if collection { key_at } else { pos };
                // A duplicate key keeps the first position (its error names the first).
                positions.entry(child.clone()).or_insert(at);
                child
            }
        },
        Frame::Seq { path, index } => {
            let child = format!("{path}[{index}]");
            *index += 1;
            positions.insert(child.clone(), pos);
            child
        }
    }
}
