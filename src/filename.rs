//! File-name (and e-mail subject/body) templates such as `customer_csv_report_{yyyyMMddHHmmss}.csv`.
//!
//! Tokens render the slot's scheduled time in the schedule's zone, never the time the run
//! happened, so a retry or re-run of a slot produces the same name. `{{` and `}}` are literal
//! braces. Templates are checked when resources are validated ([`check_template`],
//! [`check_file_name`]); [`render`] itself never fails.

use jiff::Zoned;

/// The tokens a report file name may use, without braces.
pub const FILE_NAME_TOKENS: &[&str] = &[
    "yyyy",
    "MM",
    "dd",
    "HH",
    "mm",
    "ss",
    "yyyyMMdd",
    "yyyyMMddHHmmss",
    "schedule",
    "namespace",
];

/// One piece of a template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'t> {
    /// Text copied as is (including a `{` or `}` from an escaped `{{` / `}}`).
    Literal(&'t str),
    /// A `{name}` token, without the braces.
    Token(&'t str),
}

/// Why a template does not parse, with the byte offset of the offending brace.
enum Malformed {
    Unclosed(usize),
    Unmatched(usize),
}

/// Splits `template` into pieces. Strict mode stops at the first malformed brace; lenient mode
/// (rendering) copies a malformed brace literally and carries on.
fn parse<'t>(
    template: &'t str,
    mut piece: impl FnMut(Piece<'t>),
    strict: bool,
) -> Result<(), Malformed> {
    let bytes = template.as_bytes();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (escaped, brace) = match bytes[i] {
            b'{' | b'}' if bytes.get(i + 1) == Some(&bytes[i]) => (true, bytes[i]),
            b'{' | b'}' => (false, bytes[i]),
            _ => {
                i += 1;
                continue;
            }
        };
        if escaped {
            // Emit the text so far plus one brace, and skip the second one.
            piece(Piece::Literal(&template[literal_start..=i]));
            i += 2;
            literal_start = i;
            continue;
        }
        if brace == b'}' {
            if strict {
                return Err(Malformed::Unmatched(i));
            }
            i += 1;
            continue;
        }
        // A `{`: the token runs to the next brace, which must be a `}`.
        match template[i + 1..].find(['{', '}']) {
            Some(len) if bytes[i + 1 + len] == b'}' => {
                if literal_start < i {
                    piece(Piece::Literal(&template[literal_start..i]));
                }
                piece(Piece::Token(&template[i + 1..i + 1 + len]));
                i += len + 2;
                literal_start = i;
            }
            _ if strict => return Err(Malformed::Unclosed(i)),
            _ => i += 1,
        }
    }
    if literal_start < bytes.len() {
        piece(Piece::Literal(&template[literal_start..]));
    }
    Ok(())
}

/// Checks that `template` is non-empty, has balanced braces (`{{` and `}}` are literal braces)
/// and uses only the tokens in `allowed` (given without braces).
///
/// Shared by file names and e-mail subjects and bodies, which allow extra tokens such as
/// `{fileName}` or `{link}`. Catching a typo here, at validation, is the point: at render time
/// an unknown token is left as is.
pub fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    if template.is_empty() {
        return Err("template is empty".to_string());
    }
    let mut unknown: Option<&str> = None;
    let parsed = parse(
        template,
        |piece| {
            if let Piece::Token(name) = piece
                && unknown.is_none()
                && !allowed.contains(&name)
            {
                unknown = Some(name);
            }
        },
        true,
    );
    let position = |offset: usize| template[..offset].chars().count() + 1;
    match parsed {
        Err(Malformed::Unclosed(at)) => Err(format!(
            "unclosed `{{` at character {} in `{template}`: end the token with `}}`, or write \
             `{{{{` for a literal brace",
            position(at)
        )),
        Err(Malformed::Unmatched(at)) => Err(format!(
            "unmatched `}}` at character {} in `{template}`: write `}}}}` for a literal brace",
            position(at)
        )),
        Ok(()) => match unknown {
            Some(name) => {
                let list: Vec<String> = allowed.iter().map(|t| format!("{{{t}}}")).collect();
                Err(format!(
                    "unknown token `{{{name}}}` in `{template}` (allowed: {})",
                    list.join(", ")
                ))
            }
            None => Ok(()),
        },
    }
}

/// Checks a report file-name template: [`check_template`] with [`FILE_NAME_TOKENS`], and a
/// name that is a single, safe file name.
///
/// Targets put the file into a configured directory, so the name must not climb out of it
/// (`/`, `\`, `.`, `..`). Control characters (NUL, CR, LF, ...) would corrupt FTP commands or
/// be refused by file systems, and leading or trailing spaces are almost always a mistake that
/// is invisible in listings.
pub fn check_file_name(template: &str) -> Result<(), String> {
    check_template(template, FILE_NAME_TOKENS)?;
    if template.contains(['/', '\\']) {
        return Err(format!(
            "file name `{template}` must not contain `/` or `\\`: it names a file inside the \
             target's directory, not a path"
        ));
    }
    if template.chars().any(char::is_control) {
        return Err(format!(
            "file name {template:?} must not contain control characters (NUL, tab, newline, ...)"
        ));
    }
    if template == "." || template == ".." {
        return Err(format!("`{template}` is not a file name"));
    }
    if template.trim() != template {
        return Err(format!(
            "file name `{template}` must not start or end with whitespace"
        ));
    }
    Ok(())
}

/// Everything a template can refer to.
#[derive(Clone, Copy, Debug)]
pub struct TemplateContext<'a> {
    /// The scheduled slot; date tokens render its wall-clock time in its own zone.
    pub slot: &'a Zoned,
    /// The ReportSchedule's name, for `{schedule}`.
    pub schedule: &'a str,
    /// The resource's namespace, for `{namespace}`.
    pub namespace: &'a str,
    /// Further tokens and their values, e.g. `("fileName", "report.csv")` or `("link", url)`
    /// for e-mail templates. Built-in tokens take precedence.
    pub extra: &'a [(&'a str, &'a str)],
}

/// Renders `template` with `ctx`: date tokens zero-padded from the slot's civil time,
/// `{schedule}`, `{namespace}` and the extra tokens.
///
/// Never fails, so a run cannot break half-way on a name: unknown tokens and stray braces are
/// copied as written (validation reports them earlier).
pub fn render(template: &str, ctx: &TemplateContext) -> String {
    let dt = ctx.slot.datetime();
    let (year, month, day) = (dt.year(), dt.month(), dt.day());
    let (hour, minute, second) = (dt.hour(), dt.minute(), dt.second());
    let mut out = String::with_capacity(template.len() + 16);
    let _ = parse(
        template,
        |piece| match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Token(name) => {
                let rendered = match name {
                    "yyyy" => format!("{year:04}"),
                    "MM" => format!("{month:02}"),
                    "dd" => format!("{day:02}"),
                    "HH" => format!("{hour:02}"),
                    "mm" => format!("{minute:02}"),
                    "ss" => format!("{second:02}"),
                    "yyyyMMdd" => format!("{year:04}{month:02}{day:02}"),
                    "yyyyMMddHHmmss" => {
                        format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}")
                    }
                    "schedule" => ctx.schedule.to_string(),
                    "namespace" => ctx.namespace.to_string(),
                    _ => match ctx.extra.iter().find(|(key, _)| *key == name) {
                        Some((_, value)) => value.to_string(),
                        None => format!("{{{name}}}"),
                    },
                };
                out.push_str(&rendered);
            }
        },
        false,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo_slot() -> Zoned {
        "2026-07-31T00:30:00+09:00[Asia/Tokyo]".parse().unwrap()
    }

    fn render_at(template: &str, slot: &Zoned, extra: &[(&str, &str)]) -> String {
        render(
            template,
            &TemplateContext {
                slot,
                schedule: "order-items-daily",
                namespace: "shop",
                extra,
            },
        )
    }

    #[test]
    fn the_readme_example_renders_the_slots_tokyo_time() {
        assert_eq!(
            render_at(
                "customer_csv_report_{yyyyMMddHHmmss}.csv",
                &tokyo_slot(),
                &[]
            ),
            "customer_csv_report_20260731003000.csv"
        );
    }

    #[test]
    fn date_tokens_use_the_slots_own_zone_not_utc() {
        // The same instant is still 30 July in UTC.
        let slot = tokyo_slot();
        assert_eq!(slot.timestamp().to_string(), "2026-07-30T15:30:00Z");
        assert_eq!(
            render_at("{yyyy}-{MM}-{dd}_{HH}{mm}{ss}_{yyyyMMdd}", &slot, &[]),
            "2026-07-31_003000_20260731"
        );
    }

    #[test]
    fn every_field_is_zero_padded() {
        let slot: Zoned = "0987-02-03T04:05:06+00:00[UTC]".parse().unwrap();
        assert_eq!(
            render_at("{yyyy}{MM}{dd}{HH}{mm}{ss}|{yyyyMMddHHmmss}", &slot, &[]),
            "09870203040506|09870203040506"
        );
    }

    #[test]
    fn schedule_namespace_and_extra_tokens_are_substituted() {
        assert_eq!(
            render_at(
                "{namespace}/{schedule}: {fileName} at {link}",
                &tokyo_slot(),
                &[("fileName", "r.csv"), ("link", "https://x.example/r")]
            ),
            "shop/order-items-daily: r.csv at https://x.example/r"
        );
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        assert_eq!(
            render_at("{{literal}}_{{{yyyy}}}_}}{{", &tokyo_slot(), &[]),
            "{literal}_{2026}_}{"
        );
        assert_eq!(check_file_name("{{literal}}_{{{yyyy}}}_}}{{"), Ok(()));
    }

    #[test]
    fn unknown_tokens_and_stray_braces_are_kept_as_written_when_rendering() {
        assert_eq!(
            render_at("a_{nope}_{yyyy}_{unclosed_} }", &tokyo_slot(), &[]),
            "a_{nope}_2026_{unclosed_} }"
        );
        assert_eq!(render_at("{ {yyyy}", &tokyo_slot(), &[]), "{ 2026");
    }

    #[test]
    fn check_template_accepts_known_tokens_only() {
        assert_eq!(
            check_template("report_{yyyyMMdd}.csv", FILE_NAME_TOKENS),
            Ok(())
        );
        assert_eq!(check_template("plain.csv", FILE_NAME_TOKENS), Ok(()));
        let err = check_template("report_{date}.csv", FILE_NAME_TOKENS).unwrap_err();
        assert_eq!(
            err,
            "unknown token `{date}` in `report_{date}.csv` (allowed: {yyyy}, {MM}, {dd}, {HH}, \
             {mm}, {ss}, {yyyyMMdd}, {yyyyMMddHHmmss}, {schedule}, {namespace})"
        );
        // Tokens are case-sensitive: MM is the month, mm the minute.
        assert!(
            check_template("{YYYY}", FILE_NAME_TOKENS)
                .unwrap_err()
                .contains("`{YYYY}`")
        );
        assert!(
            check_template("{}", FILE_NAME_TOKENS)
                .unwrap_err()
                .contains("`{}`")
        );
        // Extra tokens are allowed only where the caller allows them.
        assert!(check_template("{link}", FILE_NAME_TOKENS).is_err());
        assert_eq!(check_template("{link}", &["link"]), Ok(()));
    }

    #[test]
    fn check_template_reports_unbalanced_braces_and_empty_templates() {
        assert_eq!(
            check_template("", FILE_NAME_TOKENS).unwrap_err(),
            "template is empty"
        );
        let unclosed = check_template("report_{yyyy.csv", FILE_NAME_TOKENS).unwrap_err();
        assert!(
            unclosed.starts_with("unclosed `{` at character 8"),
            "{unclosed}"
        );
        let nested = check_template("a{b{yyyy}}", FILE_NAME_TOKENS).unwrap_err();
        assert!(
            nested.starts_with("unclosed `{` at character 2"),
            "{nested}"
        );
        let unmatched = check_template("日報}.csv", FILE_NAME_TOKENS).unwrap_err();
        assert!(
            unmatched.starts_with("unmatched `}` at character 3"),
            "{unmatched}"
        );
    }

    #[test]
    fn check_file_name_rejects_paths_and_unsafe_names() {
        assert_eq!(
            check_file_name("customer_csv_report_{yyyyMMddHHmmss}.csv"),
            Ok(())
        );
        assert_eq!(check_file_name(".hidden_{yyyy}.csv"), Ok(()));
        assert_eq!(check_file_name("受注 {yyyyMMdd}.csv"), Ok(()));
        for (bad, why) in [
            ("dir/report.csv", "must not contain `/`"),
            ("dir\\report.csv", "must not contain `/`"),
            ("../report.csv", "must not contain `/`"),
            ("report\0.csv", "control characters"),
            ("report\r\nDELE x", "control characters"),
            (".", "is not a file name"),
            ("..", "is not a file name"),
            (" report.csv", "whitespace"),
            ("report.csv ", "whitespace"),
            ("", "template is empty"),
            ("report_{date}.csv", "unknown token"),
            ("report_{yyyy.csv", "unclosed"),
        ] {
            let err = check_file_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
