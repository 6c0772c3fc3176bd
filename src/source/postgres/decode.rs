//! Column values from PostgreSQL's wire formats into [`Value`]s: binary (COPY and prepared
//! statements) and text (a fallback), with the conversions they need (dates from the 2000
//! epoch, exact NUMERIC digits, ISO 8601 intervals, UUIDs). Pure functions, no I/O.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};

use super::types::{Kind, MICROS_PER_DAY, PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use crate::export::Value;
use crate::source::sqlite::{is_decimal, parse_date, parse_date_time, parse_time};

type Decoded = std::result::Result<Value, String>;

fn be<const N: usize>(b: &[u8]) -> std::result::Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn utf8(b: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(b).map_err(not_utf8)
}

/// The error for text that is not UTF-8.
pub(super) fn not_utf8(_: std::str::Utf8Error) -> String {
    "the text is not valid UTF-8".to_string()
}

/// The UTF-8 text a binary value of `kind` carries (a jsonb value after its format version
/// byte), not yet checked; `None` for kinds that are not text, and for a jsonb format this
/// decoder does not know (which [`decode_binary_into`] refuses).
pub(super) fn text_bytes(kind: Kind, b: &[u8]) -> Option<&[u8]> {
    match (kind, b) {
        (Kind::Text | Kind::Char | Kind::Json, text) => Some(text),
        (Kind::Jsonb, [1, json @ ..]) => Some(json),
        _ => None,
    }
}

/// Decodes a value in PostgreSQL's binary wire format.
pub(super) fn decode_binary(kind: Kind, b: &[u8], scratch: &mut String) -> Decoded {
    let mut value = Value::Null;
    decode_binary_into(kind, b, &mut value, scratch)?;
    Ok(value)
}

/// Decodes a binary value into `slot`, reusing the text buffer a previous row left there:
/// an export refills the same rows batch after batch, so text, JSON and NUMERIC cells cost no
/// allocation once the buffers are large enough. The buffer is filled where it lies: moving
/// a `String` in and out of the slot costs more than the copy. After an error the slot's
/// value is meaningless (the export stops).
pub(super) fn decode_binary_into(
    kind: Kind,
    b: &[u8],
    slot: &mut Value,
    scratch: &mut String,
) -> std::result::Result<(), String> {
    // Kinds without a text buffer are stored straight into the slot (returning the `Value`
    // instead costs a copy through the stack per cell, measurably).
    if let Some(text) = text_bytes(kind, b) {
        slot.set_text(utf8(text)?);
        return Ok(());
    }
    *slot = match kind {
        // Text was taken above: only jsonb in a format of another version is left.
        Kind::Text | Kind::Char | Kind::Json | Kind::Jsonb => {
            return Err("unknown jsonb format version".into());
        }
        Kind::Numeric => {
            if let Value::Decimal(text) = slot {
                text.clear();
                if numeric(b, text)? {
                    return Ok(());
                }
            }
            let mut text = String::new();
            if numeric(b, &mut text)? {
                Value::Decimal(text)
            } else {
                Value::Text(text)
            }
        }
        Kind::Bool => Value::Bool(be::<1>(b)?[0] != 0),
        Kind::Int2 => Value::Int(i16::from_be_bytes(be(b)?).into()),
        Kind::Int4 => Value::Int(i32::from_be_bytes(be(b)?).into()),
        Kind::Int8 => Value::Int(i64::from_be_bytes(be(b)?)),
        Kind::Float4 => {
            // Through its shortest text, so 0.1::float4 is 0.1 and not 0.10000000149011612.
            let f = f32::from_be_bytes(be(b)?);
            scratch.clear();
            let _ = write!(scratch, "{f}");
            Value::Float(scratch.parse().unwrap_or(f64::from(f)))
        }
        Kind::Float8 => Value::Float(f64::from_be_bytes(be(b)?)),
        Kind::Bytea => Value::Bytes(b.to_vec()),
        Kind::Uuid => Value::Text(uuid(&be::<16>(b)?)),
        Kind::Date => match i32::from_be_bytes(be(b)?) {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            days => Value::Date(date_from_unix_days(i64::from(days) + PG_EPOCH_DAYS)?),
        },
        Kind::Time => {
            let micros = i64::from_be_bytes(be(b)?);
            if micros == MICROS_PER_DAY {
                Value::Text("24:00:00".into())
            } else {
                Value::Time(time_from_micros(micros)?)
            }
        }
        Kind::Timestamp => match i64::from_be_bytes(be(b)?) {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => {
                let unix = micros
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or("timestamp out of range")?;
                let date = date_from_unix_days(unix.div_euclid(MICROS_PER_DAY))?;
                let time = time_from_micros(unix.rem_euclid(MICROS_PER_DAY))?;
                Value::DateTime(DateTime::from_parts(date, time))
            }
        },
        Kind::Timestamptz => match i64::from_be_bytes(be(b)?) {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => Value::Timestamp(
                micros
                    .checked_add(PG_EPOCH_MICROS)
                    .and_then(|m| Timestamp::from_microsecond(m).ok())
                    .ok_or("timestamp out of the supported range (years -9999 to 9999)")?,
            ),
        },
        Kind::Interval => {
            if b.len() != 16 {
                return Err(format!("expected 16 bytes, got {}", b.len()));
            }
            let micros = i64::from_be_bytes(be(&b[..8])?);
            let days = i32::from_be_bytes(be(&b[8..12])?);
            let months = i32::from_be_bytes(be(&b[12..])?);
            Value::Text(interval_iso8601(months, days, micros))
        }
    };
    Ok(())
}

/// Decodes a value in PostgreSQL's text format (sqlx uses binary for prepared statements; this
/// is the fallback should it ever hand out text).
pub(super) fn decode_text(kind: Kind, b: &[u8]) -> Decoded {
    let text = utf8(b)?;
    let bad = || format!("cannot read `{text}`");
    Ok(match kind {
        Kind::Bool => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        Kind::Int2 | Kind::Int4 | Kind::Int8 => Value::Int(text.parse().map_err(|_| bad())?),
        Kind::Float4 | Kind::Float8 => Value::Float(text.parse().map_err(|_| bad())?),
        Kind::Numeric if is_decimal(text) => Value::Decimal(text.to_owned()),
        Kind::Numeric => Value::Text(text.to_owned()),
        Kind::Date => match parse_date(b).or_else(|| text.parse().ok()) {
            Some(d) => Value::Date(d),
            None => Value::Text(text.to_owned()),
        },
        Kind::Time => match parse_time(b) {
            Some(t) => Value::Time(t),
            None => Value::Text(text.to_owned()),
        },
        Kind::Timestamp | Kind::Timestamptz => match parse_date_time(text) {
            Some(v) => v,
            None => Value::Text(text.to_owned()),
        },
        Kind::Bytea => {
            let hex = text.strip_prefix("\\x").ok_or_else(bad)?;
            Value::Bytes(hex::decode(hex).map_err(|_| bad())?)
        }
        Kind::Text | Kind::Char | Kind::Json | Kind::Jsonb | Kind::Uuid | Kind::Interval => {
            Value::Text(text.to_owned())
        }
    })
}

/// The civil date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn date_from_unix_days(days: i64) -> std::result::Result<Date, String> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    i16::try_from(year)
        .ok()
        .and_then(|y| Date::new(y, month as i8, day as i8).ok())
        .ok_or_else(|| "date out of the supported range (years -9999 to 9999)".to_string())
}

fn time_from_micros(micros: i64) -> std::result::Result<Time, String> {
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return Err("time of day out of range".into());
    }
    let secs = micros / 1_000_000;
    Time::new(
        (secs / 3600) as i8,
        (secs / 60 % 60) as i8,
        (secs % 60) as i8,
        (micros % 1_000_000 * 1000) as i32,
    )
    .map_err(|e| e.to_string())
}

fn uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 15)] as char);
    }
    s
}

/// Appends `n` (0..=9999) as exactly four digits.
fn push4(out: &mut String, n: u16) {
    out.push(char::from(b'0' + (n / 1000 % 10) as u8));
    out.push(char::from(b'0' + (n / 100 % 10) as u8));
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// A binary NUMERIC as its exact text, appended to `out`: `ndigits`, `weight`, `sign`,
/// `dscale`, then `ndigits` base-10000 digits, the first worth 10000^weight. Printed as
/// PostgreSQL prints it: every digit of the display scale, no exponent. Returns whether it is
/// a number (`false`: `NaN`, `Infinity` or `-Infinity`).
fn numeric(b: &[u8], out: &mut String) -> std::result::Result<bool, String> {
    if b.len() < 8 {
        return Err("truncated numeric".into());
    }
    let ndigits = i16::from_be_bytes([b[0], b[1]]);
    let weight = i16::from_be_bytes([b[2], b[3]]);
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]);
    match sign {
        0xC000 | 0xD000 | 0xF000 => {
            out.push_str(match sign {
                0xC000 => "NaN",
                0xD000 => "Infinity",
                _ => "-Infinity",
            });
            return Ok(false);
        }
        0x0000 | 0x4000 => {}
        _ => return Err(format!("unknown numeric sign {sign:#x}")),
    }
    let ndigits = usize::try_from(ndigits).map_err(|_| "negative numeric length")?;
    if b.len() != 8 + 2 * ndigits {
        return Err("numeric length does not match its digits".into());
    }
    let digit = |i: i32| -> std::result::Result<u16, String> {
        if i < 0 || i as usize >= ndigits {
            return Ok(0);
        }
        let at = 8 + 2 * i as usize;
        let d = u16::from_be_bytes([b[at], b[at + 1]]);
        if d > 9999 {
            return Err("numeric digit out of range".into());
        }
        Ok(d)
    };
    let weight = i32::from(weight);
    out.reserve(4 * (ndigits + 2) + usize::from(dscale));
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i)?;
            if i == 0 {
                // The leading group without leading zeros.
                let start = out.len();
                push4(out, d);
                let zeros = out[start..]
                    .bytes()
                    .take(3)
                    .take_while(|&c| c == b'0')
                    .count();
                out.drain(start..start + zeros);
            } else {
                push4(out, d);
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut remaining = usize::from(dscale);
        let mut i = weight + 1;
        while remaining > 0 {
            let start = out.len();
            push4(out, digit(i)?);
            if remaining < 4 {
                out.truncate(start + remaining);
                break;
            }
            remaining -= 4;
            i += 1;
        }
    }
    Ok(true)
}

/// An interval as PostgreSQL prints it with `IntervalStyle = iso_8601`.
fn interval_iso8601(months: i32, days: i32, micros: i64) -> String {
    let years = months / 12;
    let months = months % 12;
    let hours = micros / 3_600_000_000;
    let rest = micros - hours * 3_600_000_000;
    let minutes = rest / 60_000_000;
    let rest = rest - minutes * 60_000_000;
    let seconds = rest / 1_000_000;
    let fraction = rest - seconds * 1_000_000;
    if years == 0 && months == 0 && days == 0 && micros == 0 {
        return "PT0S".into();
    }
    let mut s = String::from("P");
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            let _ = write!(s, "{n}{unit}");
        }
    }
    if micros != 0 {
        s.push('T');
        for (n, unit) in [(hours, 'H'), (minutes, 'M')] {
            if n != 0 {
                let _ = write!(s, "{n}{unit}");
            }
        }
        if seconds != 0 || fraction != 0 {
            if seconds < 0 || fraction < 0 {
                s.push('-');
            }
            let _ = write!(s, "{}", seconds.abs());
            if fraction != 0 {
                let digits = format!("{:06}", fraction.abs());
                let _ = write!(s, ".{}", digits.trim_end_matches('0'));
            }
            s.push('S');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::postgres::types::PgInstant;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as i16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    fn dec(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Value {
        let b = numeric_bytes(weight, sign, dscale, digits);
        decode_binary(Kind::Numeric, &b, &mut String::new()).unwrap()
    }

    #[test]
    fn numerics_print_every_digit_of_their_scale() {
        let d = |s: &str| Value::Decimal(s.into());
        // 12345678901234567890.123456789 = 1234 5678 9012 3456 7890 . 1234 5678 9000
        assert_eq!(
            dec(4, 0, 9, &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]),
            d("12345678901234567890.123456789")
        );
        assert_eq!(dec(0, 0, 0, &[]), d("0"));
        assert_eq!(dec(0, 0, 2, &[]), d("0.00"));
        assert_eq!(dec(0, 0x4000, 2, &[12, 5000]), d("-12.50"));
        assert_eq!(dec(-2, 0, 8, &[1234]), d("0.00001234"));
        assert_eq!(dec(-1, 0x4000, 4, &[5]), d("-0.0005"));
        assert_eq!(dec(-1, 0x4000, 3, &[5]), d("-0.000"));
        assert_eq!(dec(2, 0, 0, &[1]), d("100000000"));
        assert_eq!(dec(1, 0, 1, &[1, 0]), d("10000.0"));
    }

    /// Decoding into a reused slot gives what decoding afresh gives, whatever the slot held.
    #[test]
    fn decoding_into_a_reused_slot_equals_decoding_afresh() {
        let cells: Vec<(Kind, Vec<u8>)> = vec![
            (Kind::Text, "bonjour, 世界".as_bytes().to_vec()),
            (Kind::Text, Vec::new()),
            (Kind::Json, br#"{"a":1}"#.to_vec()),
            (Kind::Jsonb, b"\x01[1, 2]".to_vec()),
            (Kind::Numeric, numeric_bytes(0, 0x4000, 2, &[12, 5000])),
            (Kind::Numeric, numeric_bytes(0, 0xC000, 0, &[])),
            (Kind::Int8, 42i64.to_be_bytes().to_vec()),
            (Kind::Float8, 0.1f64.to_be_bytes().to_vec()),
            (Kind::Date, 9000i32.to_be_bytes().to_vec()),
        ];
        let previous = [
            Value::Null,
            Value::Text("a much longer earlier value".into()),
            Value::Decimal("1.00".into()),
            Value::Int(7),
        ];
        let mut scratch = String::new();
        for (kind, bytes) in &cells {
            let fresh = decode_binary(*kind, bytes, &mut scratch).unwrap();
            for before in &previous {
                let mut slot = before.clone();
                decode_binary_into(*kind, bytes, &mut slot, &mut scratch).unwrap();
                assert_eq!(slot, fresh, "{kind:?} over {before:?}");
            }
        }
        let mut slot = Value::Text("earlier".into());
        assert!(decode_binary_into(Kind::Text, b"\xff", &mut slot, &mut scratch).is_err());
    }

    #[test]
    fn numeric_specials_are_text() {
        assert_eq!(dec(0, 0xC000, 0, &[]), Value::Text("NaN".into()));
        assert_eq!(dec(0, 0xD000, 0, &[]), Value::Text("Infinity".into()));
        assert_eq!(dec(0, 0xF000, 0, &[]), Value::Text("-Infinity".into()));
        assert!(numeric(&[0, 1, 0, 0], &mut String::new()).is_err());
    }

    #[test]
    fn intervals_read_like_postgres_iso_8601_style() {
        const H: i64 = 3_600_000_000;
        assert_eq!(interval_iso8601(0, 1, 2 * H), "P1DT2H");
        assert_eq!(interval_iso8601(14, 0, 0), "P1Y2M");
        assert_eq!(interval_iso8601(0, 0, 500_000), "PT0.5S");
        assert_eq!(interval_iso8601(0, 0, 0), "PT0S");
        assert_eq!(interval_iso8601(0, -1, 0), "P-1D");
        assert_eq!(interval_iso8601(0, 0, -(H + 90_000_000)), "PT-1H-1M-30S");
        assert_eq!(
            interval_iso8601(-13, 3, 61_000_001),
            "P-1Y-1M3DT1M1.000001S"
        );
    }

    #[test]
    fn dates_and_times_come_from_the_2000_epoch() {
        assert_eq!(
            date_from_unix_days(PG_EPOCH_DAYS).unwrap(),
            jiff::civil::date(2000, 1, 1)
        );
        assert_eq!(
            date_from_unix_days(PG_EPOCH_DAYS - 1).unwrap(),
            jiff::civil::date(1999, 12, 31)
        );
        assert_eq!(
            date_from_unix_days(20_664).unwrap(),
            jiff::civil::date(2026, 7, 30)
        );
        assert!(date_from_unix_days(5_000_000).is_err());
        let mut scratch = String::new();
        let ts = decode_binary(Kind::Timestamp, &(-1i64).to_be_bytes(), &mut scratch).unwrap();
        assert_eq!(
            ts,
            Value::DateTime("1999-12-31T23:59:59.999999".parse().unwrap())
        );
        let tz = decode_binary(Kind::Timestamptz, &0i64.to_be_bytes(), &mut scratch).unwrap();
        assert_eq!(
            tz,
            Value::Timestamp("2000-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            PgInstant::from_timestamp("2000-01-01T00:00:01Z".parse().unwrap()),
            PgInstant(1_000_000)
        );
    }

    #[test]
    fn uuids_are_lowercase_and_hyphenated() {
        let b: [u8; 16] = [
            0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44,
            0x00, 0x00,
        ];
        assert_eq!(uuid(&b), "550e8400-e29b-41d4-a716-446655440000");
    }

    #[test]
    fn text_format_values_decode_too() {
        assert_eq!(decode_text(Kind::Bool, b"t").unwrap(), Value::Bool(true));
        assert_eq!(decode_text(Kind::Int8, b"-42").unwrap(), Value::Int(-42));
        assert_eq!(
            decode_text(Kind::Numeric, b"1.50").unwrap(),
            Value::Decimal("1.50".into())
        );
        assert_eq!(
            decode_text(Kind::Numeric, b"NaN").unwrap(),
            Value::Text("NaN".into())
        );
        assert_eq!(
            decode_text(Kind::Timestamptz, b"2023-11-14 22:13:22+09").unwrap(),
            Value::Timestamp("2023-11-14T13:13:22Z".parse().unwrap())
        );
        assert_eq!(
            decode_text(Kind::Bytea, b"\\x00ff").unwrap(),
            Value::Bytes(vec![0, 255])
        );
    }
}
