//! Pure layout arithmetic: column widths and line wrapping. No PDF here, so it is easy to
//! test; widths come from a measuring function (points per character).

/// Distributes `available` points over columns that would like `natural` points each and
/// need at least `minimum` (the widest unbreakable word, already capped by the caller):
///
/// - everything fits: each column gets its natural width, scaled up so the table spans the
///   page;
/// - the minimums fit: every column gets its minimum, then the rest goes first to the
///   columns that need little more to fit on one line (ids, dates, short names: they get
///   their natural width while it is no more than an equal share of what is left), and
///   what remains is shared by the long-text columns in proportion to what they lack;
/// - not even the minimums fit: minimums scaled down (words are then broken mid-word).
pub(crate) fn column_widths(natural: &[f32], minimum: &[f32], available: f32) -> Vec<f32> {
    let natural: Vec<f32> = natural
        .iter()
        .zip(minimum)
        .map(|(&n, &m)| n.max(m))
        .collect();
    let sum_natural: f32 = natural.iter().sum();
    let sum_minimum: f32 = minimum.iter().sum();
    if natural.is_empty() || sum_natural <= 0.0 {
        return natural;
    }
    if sum_natural <= available {
        let scale = available / sum_natural;
        return natural.iter().map(|w| w * scale).collect();
    }
    if sum_minimum > available {
        let scale = available / sum_minimum;
        return minimum.iter().map(|w| w * scale).collect();
    }
    let mut widths = minimum.to_vec();
    let mut slack = available - sum_minimum;
    let lack = |i: usize| natural[i] - minimum[i];
    let mut pending: Vec<usize> = (0..natural.len()).collect();
    pending.sort_by(|&a, &b| lack(a).total_cmp(&lack(b)));
    let mut first_long = 0;
    for (k, &i) in pending.iter().enumerate() {
        if lack(i) > slack / (pending.len() - k) as f32 {
            break;
        }
        widths[i] = natural[i];
        slack -= lack(i);
        first_long = k + 1;
    }
    let long = &pending[first_long..];
    let wanted: f32 = long.iter().map(|&i| lack(i)).sum();
    for &i in long {
        widths[i] += slack * lack(i) / wanted;
    }
    widths
}

/// Characters a line must not start with (closing punctuation, small kana: Japanese
/// line-breaking rules, and their Latin counterparts).
const NO_BREAK_BEFORE: &str = ")]}.,;:!?%、。，．・：；？！ー」』）］｝〉》】〕…‥ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ々";
/// Characters a line must not end with (opening brackets).
const NO_BREAK_AFTER: &str = "([{「『（［｛〈《【〔";

/// Wide (CJK) characters: lines may break between any two of them.
fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x2E80..=0x303F    // CJK radicals, punctuation
        | 0x3040..=0x33FF    // kana, CJK compatibility
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xA000..=0xA4CF    // Yi
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFE30..=0xFE4F    // CJK compatibility forms
        | 0xFF00..=0xFFEF    // full-width forms
        | 0x20000..=0x3FFFF) // CJK extensions B-
}

/// Whether a line may break between `a` and `b`.
fn can_break(a: char, b: char) -> bool {
    if NO_BREAK_BEFORE.contains(b) || NO_BREAK_AFTER.contains(a) {
        return b == ' ';
    }
    b == ' ' || a == ' ' || a == '-' || a == '/' || is_wide(a) || is_wide(b)
}

/// Breaks `text` into lines at most `width` points wide: at explicit line breaks, between
/// words, between CJK characters, and inside a word only when the word alone is too wide.
/// At most `max_lines` lines: if text remains, the last line ends with `ellipsis`
/// (shortened to make room). `char_width` gives a character's width in points.
pub(crate) fn wrap(
    text: &str,
    width: f32,
    max_lines: usize,
    ellipsis: &str,
    char_width: impl Fn(char) -> f32,
) -> Vec<String> {
    // Column edges are sums of widths: allow for their rounding.
    let width = width + 0.01;
    let mut lines: Vec<String> = Vec::new();
    // Fast path: one line that fits.
    if !text.contains('\n') {
        let trimmed = text.trim();
        if trimmed.chars().map(&char_width).sum::<f32>() <= width {
            if !trimmed.is_empty() {
                lines.push(trimmed.to_string());
            }
            return lines;
        }
    }
    let mut truncated = false;
    let mut chars: Vec<char> = Vec::new();
    let mut widths: Vec<f32> = Vec::new();
    'paragraphs: for paragraph in text.split('\n').map(str::trim).filter(|p| !p.is_empty()) {
        if lines.len() == max_lines {
            truncated = true;
            break;
        }
        chars.clear();
        chars.extend(paragraph.chars());
        widths.clear();
        widths.extend(chars.iter().map(|&c| char_width(c)));
        let n = chars.len();
        let mut start = 0;
        loop {
            while start < n && chars[start] == ' ' {
                start += 1;
            }
            if start == n {
                break;
            }
            if lines.len() == max_lines {
                truncated = true;
                break 'paragraphs;
            }
            // Greedy: as many characters as fit (at least one).
            let mut end = start;
            let mut used = 0.0;
            let mut last_break = None;
            while end < n && (end == start || used + widths[end] <= width) {
                if end > start && can_break(chars[end - 1], chars[end]) {
                    last_break = Some(end);
                }
                used += widths[end];
                end += 1;
            }
            if end < n {
                if can_break(chars[end - 1], chars[end]) {
                    last_break = Some(end);
                }
                if let Some(b) = last_break {
                    end = b;
                }
            }
            let line: String = chars[start..end].iter().collect();
            lines.push(line.trim_end().to_string());
            start = end;
        }
    }
    if truncated && let Some(last) = lines.last_mut() {
        let room = width - ellipsis.chars().map(&char_width).sum::<f32>();
        let mut used: f32 = last.chars().map(&char_width).sum();
        while used > room {
            match last.pop() {
                Some(c) => used -= char_width(c),
                None => break,
            }
        }
        let kept = last.trim_end().len();
        last.truncate(kept);
        last.push_str(ellipsis);
    }
    lines
}

/// Width of the widest word of `text` (a run between break opportunities), in points.
pub(crate) fn widest_word(text: &str, char_width: impl Fn(char) -> f32) -> f32 {
    let mut widest = 0.0f32;
    let mut current = 0.0f32;
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if c == '\n' || prev.is_some_and(|p| can_break(p, c)) {
            widest = widest.max(current);
            current = 0.0;
        }
        if c != ' ' && c != '\n' {
            current += char_width(c);
        }
        prev = Some(c);
    }
    widest.max(current)
}

/// Width of the widest explicit line of `text`, in points.
pub(crate) fn widest_line(text: &str, char_width: impl Fn(char) -> f32) -> f32 {
    text.split('\n')
        .map(|line| line.trim().chars().map(&char_width).sum::<f32>())
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character one point wide, CJK characters two.
    fn w(c: char) -> f32 {
        if is_wide(c) { 2.0 } else { 1.0 }
    }

    #[test]
    fn text_that_fits_stays_on_one_line() {
        assert_eq!(wrap("  hello world ", 11.0, 3, "…", w), vec!["hello world"]);
        assert!(wrap("", 10.0, 3, "…", w).is_empty());
    }

    #[test]
    fn long_text_wraps_between_words() {
        assert_eq!(
            wrap("the quick brown fox jumps", 10.0, 3, "…", w),
            vec!["the quick", "brown fox", "jumps"]
        );
    }

    #[test]
    fn a_word_wider_than_the_column_is_broken_inside() {
        assert_eq!(
            wrap("abcdefghij", 4.0, 3, "…", w),
            vec!["abcd", "efgh", "ij"]
        );
    }

    #[test]
    fn text_beyond_the_line_limit_ends_with_an_ellipsis() {
        let lines = wrap("aaa bbb ccc ddd eee", 4.0, 2, "…", w);
        assert_eq!(lines, vec!["aaa", "bbb…"]);
        assert!(lines.iter().all(|l| l.chars().map(w).sum::<f32>() <= 4.0));
        let lines = wrap("abcdefghijkl", 4.0, 2, "…", w);
        assert_eq!(lines, vec!["abcd", "efg…"]);
    }

    #[test]
    fn japanese_text_breaks_between_characters_but_not_before_closing_punctuation() {
        // 2 points per character, 8 points per line: four characters.
        assert_eq!(
            wrap("東京都千代田区丸の内", 8.0, 3, "…", w),
            vec!["東京都千", "代田区丸", "の内"]
        );
        // "。" may not start a line: the break moves one character back.
        assert_eq!(
            wrap("東京都千。代田", 8.0, 3, "…", w),
            vec!["東京都", "千。代田"]
        );
    }

    #[test]
    fn explicit_line_breaks_are_kept_and_blank_lines_dropped() {
        assert_eq!(
            wrap("one\n\ntwo\nthree", 10.0, 3, "…", w),
            vec!["one", "two", "three"]
        );
        assert_eq!(
            wrap("one\ntwo\nthree\nfour", 10.0, 3, "…", w),
            vec!["one", "two", "three…"]
        );
    }

    #[test]
    fn columns_that_fit_are_stretched_to_the_available_width() {
        let widths = column_widths(&[10.0, 30.0], &[5.0, 5.0], 80.0);
        assert_eq!(widths, vec![20.0, 60.0]);
    }

    #[test]
    fn columns_that_do_not_fit_keep_their_minimum_and_share_the_rest() {
        let widths = column_widths(&[20.0, 200.0], &[20.0, 40.0], 100.0);
        assert_eq!(widths, vec![20.0, 80.0]);
        // Short columns get their natural width; the two long ones share the rest.
        let widths = column_widths(
            &[30.0, 100.0, 300.0, 40.0, 200.0],
            &[20.0, 100.0, 50.0, 30.0, 50.0],
            400.0,
        );
        assert_eq!(widths[0], 30.0);
        assert_eq!(widths[1], 100.0);
        assert_eq!(widths[3], 40.0);
        assert!(
            (widths[2] - (50.0 + 130.0 * 250.0 / 400.0)).abs() < 1e-3,
            "{widths:?}"
        );
        assert!((widths.iter().sum::<f32>() - 400.0).abs() < 1e-3);
        let widths = column_widths(&[100.0, 100.0], &[100.0, 100.0], 100.0);
        assert_eq!(widths, vec![50.0, 50.0]);
    }

    #[test]
    fn the_widest_word_ignores_spaces_and_splits_cjk() {
        assert_eq!(widest_word("a bcd ef", w), 3.0);
        assert_eq!(widest_word("東京都", w), 2.0);
        assert_eq!(widest_line("ab\nabcd ef", w), 7.0);
    }
}
