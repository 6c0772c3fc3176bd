//! The PostgreSQL types Ferry reads and binds: the epoch constants of the binary format, the
//! `timestamptz` parameter ([`PgInstant`]), the built-in type OIDs and how each column type is
//! decoded ([`Kind`]). A leaf: both the connection code and the value decoding use it.

use jiff::Timestamp;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgTypeKind, Postgres};
use sqlx::{Encode, TypeInfo};

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01T00:00:00Z.
pub(super) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's epoch.
pub(super) const PG_EPOCH_DAYS: i64 = 10_957;
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// An instant bound as a `timestamptz` parameter. Binary format: microseconds since
/// 2000-01-01T00:00:00Z, big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgInstant(pub i64);

impl PgInstant {
    /// The instant of `ts` (sub-microsecond digits are dropped, rounding toward the past).
    pub fn from_timestamp(ts: Timestamp) -> PgInstant {
        let micros = ts.as_microsecond();
        PgInstant(micros.saturating_sub(PG_EPOCH_MICROS))
    }
}

impl sqlx::Type<Postgres> for PgInstant {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(oid::TIMESTAMPTZ))
    }
}

impl Encode<'_, Postgres> for PgInstant {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend(&self.0.to_be_bytes());
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        8
    }
}

/// Built-in type OIDs (stable across PostgreSQL versions, from `pg_type.dat`).
pub(super) mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// How a column is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Char,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Uuid,
    Json,
    Jsonb,
    Bytea,
    Interval,
}

impl Kind {
    pub(super) fn of(ty: &PgTypeInfo) -> Option<Kind> {
        if let Some(Oid(oid)) = ty.oid() {
            let kind = match oid {
                oid::BOOL => Kind::Bool,
                oid::INT2 => Kind::Int2,
                oid::INT4 => Kind::Int4,
                oid::INT8 => Kind::Int8,
                oid::FLOAT4 => Kind::Float4,
                oid::FLOAT8 => Kind::Float8,
                oid::NUMERIC => Kind::Numeric,
                oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN => Kind::Text,
                oid::CHAR => Kind::Char,
                oid::DATE => Kind::Date,
                oid::TIME => Kind::Time,
                oid::TIMESTAMP => Kind::Timestamp,
                oid::TIMESTAMPTZ => Kind::Timestamptz,
                oid::UUID => Kind::Uuid,
                oid::JSON => Kind::Json,
                oid::JSONB => Kind::Jsonb,
                oid::BYTEA => Kind::Bytea,
                oid::INTERVAL => Kind::Interval,
                _ => return Kind::custom(ty),
            };
            return Some(kind);
        }
        Kind::custom(ty)
    }

    /// Custom types whose binary form is their text: enums and citext.
    fn custom(ty: &PgTypeInfo) -> Option<Kind> {
        match ty.kind() {
            PgTypeKind::Enum(_) => Some(Kind::Text),
            PgTypeKind::Simple if ty.name().eq_ignore_ascii_case("citext") => Some(Kind::Text),
            _ => None,
        }
    }
}
