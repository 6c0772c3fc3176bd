//! Autotask billing periods: the date a unit adjustment takes effect under an
//! [`EffectiveDate`] rule, and the units Autotask holds on that date.
//!
//! Autotask keeps one ContractServiceUnits row per service and billing period, and an
//! adjustment dated inside a period starts a new row on its effective date (Autotask's
//! *ContractServiceUnits* entity documentation; `docs/psa-contract.md`). So the rule decides
//! what a sync does to the invoice: `periodStart` re-prices the whole period at the new count
//! (one row per period, whatever the number of syncs), `nextPeriod` leaves the current period
//! alone, `now` splits the period and prorates it.

use jiff::civil::Date;

use crate::api::EffectiveDate;
use crate::psa::autotask::UnitRow;

/// The row of `service` holding `day` (the latest-starting one, should rows overlap).
pub fn holding(rows: &[UnitRow], service: i64, day: Date) -> Option<&UnitRow> {
    rows.iter()
        .filter(|r| r.service_id == service && r.start <= day && day <= r.end)
        .max_by_key(|r| r.start)
}

/// The units Autotask bills for `service` on `day`: the row holding it, else the latest row
/// ending before it (a period not generated yet carries the count on), else 0.
pub fn units_at(rows: &[UnitRow], service: i64, day: Date) -> f64 {
    if let Some(r) = holding(rows, service, day) {
        return r.units;
    }
    rows.iter()
        .filter(|r| r.service_id == service && r.end < day)
        .max_by_key(|r| r.end)
        .map_or(0.0, |r| r.units)
}

/// The date an adjustment of `service` made on `on` takes effect under `rule`. Without a row
/// holding `on` (a service new to the contract), periods are taken as calendar months.
pub fn effective_date(rows: &[UnitRow], service: i64, on: Date, rule: EffectiveDate) -> Date {
    let period = holding(rows, service, on);
    match rule {
        EffectiveDate::Now => on,
        EffectiveDate::PeriodStart => period.map_or_else(|| on.first_of_month(), |r| r.start),
        EffectiveDate::NextPeriod => {
            let last = period.map_or_else(|| on.last_of_month(), |r| r.end);
            last.tomorrow().unwrap_or(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn row(start: Date, end: Date, units: f64) -> UnitRow {
        UnitRow {
            service_id: 20,
            start,
            end,
            units,
        }
    }

    fn july_and_august() -> Vec<UnitRow> {
        vec![
            row(date(2026, 7, 1), date(2026, 7, 31), 4.0),
            row(date(2026, 8, 1), date(2026, 8, 31), 6.0),
        ]
    }

    #[test]
    fn period_start_is_the_first_day_of_the_row_holding_the_day() {
        let rows = july_and_august();
        let on = date(2026, 7, 30);
        assert_eq!(
            effective_date(&rows, 20, on, EffectiveDate::PeriodStart),
            date(2026, 7, 1)
        );
        assert_eq!(units_at(&rows, 20, date(2026, 7, 1)), 4.0);
    }

    #[test]
    fn next_period_is_the_day_after_the_row_holding_the_day() {
        let rows = july_and_august();
        let next = effective_date(&rows, 20, date(2026, 7, 30), EffectiveDate::NextPeriod);
        assert_eq!(next, date(2026, 8, 1));
        assert_eq!(units_at(&rows, 20, next), 6.0);
    }

    #[test]
    fn now_is_the_day_itself() {
        let on = date(2026, 7, 30);
        assert_eq!(
            effective_date(&july_and_august(), 20, on, EffectiveDate::Now),
            on
        );
    }

    #[test]
    fn a_period_not_generated_yet_carries_the_last_count_on() {
        let rows = july_and_august();
        assert_eq!(units_at(&rows, 20, date(2026, 9, 1)), 6.0);
        assert_eq!(units_at(&rows, 20, date(2026, 6, 30)), 0.0);
        assert_eq!(units_at(&rows, 21, date(2026, 7, 30)), 0.0);
    }

    #[test]
    fn a_service_without_rows_takes_calendar_months() {
        let on = date(2026, 2, 10);
        assert_eq!(
            effective_date(&[], 20, on, EffectiveDate::PeriodStart),
            date(2026, 2, 1)
        );
        assert_eq!(
            effective_date(&[], 20, on, EffectiveDate::NextPeriod),
            date(2026, 3, 1)
        );
    }

    #[test]
    fn a_split_period_is_found_by_its_latest_row() {
        let rows = vec![
            row(date(2026, 7, 1), date(2026, 7, 29), 4.0),
            row(date(2026, 7, 30), date(2026, 7, 31), 10.0),
        ];
        assert_eq!(units_at(&rows, 20, date(2026, 7, 31)), 10.0);
        assert_eq!(units_at(&rows, 20, date(2026, 7, 3)), 4.0);
    }
}
