//! Semantic validation: everything the types alone cannot say. References resolve, time zones
//! and cron expressions parse, times and days are in range, names are unique, exactly one
//! variant is chosen. Every problem is reported at once, each located at its field.
//!
//! The checks of one DeliveryTarget kind live beside its transport (`deliver::spec_of`); the
//! field checks they share are in [`fields`].

pub mod fields;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::api::*;
use crate::diagnostic::Diagnostic;
use crate::filename;
use crate::load::{LoadedResource, Origin};
use crate::schedule;
use crate::source::Dialect;
use fields::Problems;

/// What the query check found, per query text and dialect (computed once for all resources).
type QueryChecks<'a> =
    HashMap<(&'a str, Option<Dialect>), Result<(), crate::source::statement::QueryProblem>>;

/// Collects diagnostics for one resource.
struct Checker<'a> {
    origin: &'a Origin,
    key: &'a ResourceKey,
    out: &'a mut Vec<Diagnostic>,
    queries: &'a QueryChecks<'a>,
}

impl Checker<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.out
            .push(self.origin.diagnostic(Some(self.key), field, message));
    }

    fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.error(field, message);
        }
    }

    /// A problem inside a string value (a query): located at the character `offset` of
    /// `value` in the file, not at the field's start.
    fn error_in_value(&mut self, field: &str, value: &str, offset: usize, message: String) {
        let mut d = self.origin.diagnostic(Some(self.key), field, message);
        (d.line, d.col) = self.origin.locate_in_value(field, value, offset);
        self.out.push(d);
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.error(field, "must not be empty");
        }
    }
}

/// Validates a whole set of resources together (references cross resources). Returns every
/// problem found; an empty list means valid.
pub fn validate(resources: &[LoadedResource]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen: HashMap<&ResourceKey, &Origin> = HashMap::new();
    // The first definition wins, as for duplicates: later ones are reported, not used.
    let mut targets: HashMap<(&str, &str), &DeliveryTargetSpec> = HashMap::new();
    for r in resources {
        if let Spec::DeliveryTarget(spec) = &r.spec {
            targets
                .entry((r.key.namespace.as_str(), r.key.name.as_str()))
                .or_insert(spec.as_ref());
        }
    }
    // (namespace, customer, PSA target) of every CustomerMapping: who may receive reports.
    let mapped: std::collections::HashSet<(&str, &str, &str)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::CustomerMapping(m) => Some((
                r.key.namespace.as_str(),
                m.customer.as_str(),
                m.psa.target.as_str(),
            )),
            _ => None,
        })
        .collect();
    let mut connection_names: HashMap<(&str, &str), &ResourceKey> = HashMap::new();
    let queries = check_queries(resources);
    for r in resources {
        let mut c = Checker {
            origin: &r.origin,
            key: &r.key,
            out: &mut out,
            queries: &queries,
        };
        if let Some(first) = seen.get(&r.key) {
            c.error(
                "metadata.name",
                format!(
                    "duplicate {} `{}` in namespace `{}` (first defined at {})",
                    r.key.kind,
                    r.key.name,
                    r.key.namespace,
                    first.short()
                ),
            );
            continue;
        }
        seen.insert(&r.key, &r.origin);
        c.check("metadata.name", check_name(&r.key.name));
        c.check("metadata.namespace", check_namespace(&r.key.namespace));
        match &r.spec {
            Spec::DeliveryTarget(spec) => {
                check_delivery_target(&mut c, spec);
                if let Some(hosted) = &spec.hosted_sftp {
                    let id = (r.key.namespace.as_str(), hosted.connection_name.as_str());
                    if let Some(other) = connection_names.insert(id, &r.key) {
                        c.error(
                            "spec.hostedSftp.connectionName",
                            format!(
                                "connection name `{}` is already used by DeliveryTarget/{}",
                                hosted.connection_name, other.name
                            ),
                        );
                    }
                }
            }
            Spec::ReportSchedule(spec) => {
                let customer = r.meta.labels.get(crate::psa::sync::CUSTOMER_LABEL);
                check_report_schedule(&mut c, spec, &targets, customer, &mapped)
            }
            Spec::CustomerMapping(spec) => check_customer_mapping(&mut c, spec, &targets),
        }
        check_secret_refs(&mut c, r.spec_json(), "spec");
    }
    out.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    out
}

/// A DNS-1123 subdomain, as Kubernetes requires of object names.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing metadata.name".into());
    }
    if name.len() > 253 {
        return Err(format!("name `{name}` is longer than 253 characters"));
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{name}`: use lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
        ))
    }
}

/// A DNS-1123 label, as Kubernetes requires of namespaces.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid namespace `{ns}`: use at most 63 lowercase letters, digits and `-`"
        ))
    }
}

fn check_schedule(c: &mut Checker, field: &str, schedule: &Schedule) {
    match schedule {
        Schedule::Daily(d) => c.check(
            &format!("{field}.daily.at"),
            schedule::parse_time_of_day(&d.at).map(drop),
        ),
        Schedule::Weekly(w) => {
            if w.on.is_empty() {
                c.error(
                    &format!("{field}.weekly.on"),
                    "list at least one weekday (mon, tue, wed, thu, fri, sat, sun)",
                );
            }
            c.check(
                &format!("{field}.weekly.at"),
                schedule::parse_time_of_day(&w.at).map(drop),
            );
        }
        Schedule::Monthly(m) => {
            if !(1..=31).contains(&m.day) {
                c.error(
                    &format!("{field}.monthly.day"),
                    format!(
                        "expected a day of the month from 1 to 31, found `{}`",
                        m.day
                    ),
                );
            }
            c.check(
                &format!("{field}.monthly.at"),
                schedule::parse_time_of_day(&m.at).map(drop),
            );
        }
        Schedule::Cron(expr) => c.check(&format!("{field}.cron"), schedule::validate_cron(expr)),
        Schedule::Every(d) => c.check(&format!("{field}.every"), positive_duration(d)),
    }
}

fn positive_duration(s: &str) -> Result<(), String> {
    let d = schedule::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration `{s}` must be greater than zero"));
    }
    Ok(())
}

fn check_time_zone(c: &mut Checker, field: &str, tz: &str) {
    c.check(field, schedule::parse_time_zone(tz).map(drop));
}

fn check_sql(c: &mut Checker, field: &str, sql: &SqlSource) {
    match (&sql.url, &sql.connection_secret_ref) {
        (Some(_), Some(_)) => c.error(
            field,
            "give either `url` or `connectionSecretRef`, not both",
        ),
        (None, None) => c.error(
            field,
            "missing database: give `url` (e.g. sqlite://shop.db) or `connectionSecretRef`",
        ),
        (Some(url), None) => {
            let scheme_ok = [
                "sqlite:",
                "postgres://",
                "postgresql://",
                "mysql://",
                "mariadb://",
            ]
            .iter()
            .any(|p| url.starts_with(p));
            if crate::redact::url_has_password(url) {
                c.error(
                    &format!("{field}.url"),
                    format!(
                        "`{}` carries a password, which would show in plans and state: move the URL to a Secret and use connectionSecretRef",
                        crate::redact::redact_url(url)
                    ),
                );
            } else if !scheme_ok {
                c.error(
                    &format!("{field}.url"),
                    format!(
                        "unsupported database URL `{}`: expected sqlite:PATH, sqlite://PATH, postgres://... or mysql://...",
                        crate::redact::redact_url(url)
                    ),
                );
            }
        }
        (None, Some(_)) => {}
    }
    let query_field = format!("{field}.query");
    c.non_empty(&query_field, &sql.query);
    if let Some(dialect) = query_dialect(sql)
        && let Some(Err(problem)) = c.queries.get(&(sql.query.as_str(), dialect))
    {
        c.error_in_value(
            &query_field,
            &sql.query,
            problem.offset,
            problem.message.clone(),
        );
    }
}

/// `partition` of a report's source: PostgreSQL only, 2 to 16 sessions, a column name, and a
/// query that can be split (one plain SELECT; see [`crate::source::split`]).
fn check_partition(c: &mut Checker, field: &str, sql: &SqlSource) {
    let Some(partition) = &sql.partition else {
        return;
    };
    let field = format!("{field}.partition");
    if let Some(url) = &sql.url
        && url.starts_with("sqlite:")
    {
        c.error(
            &field,
            "partition is for PostgreSQL; a SQLite database is read by one connection: remove it",
        );
        return;
    }
    if let Some(url) = &sql.url
        && crate::source::is_mysql_url(url)
    {
        c.error(
            &field,
            "partition is for PostgreSQL; a MySQL/MariaDB database is read by one connection: \
             remove it",
        );
        return;
    }
    let max = crate::source::postgres::MAX_PARTS;
    if !(2..=max).contains(&partition.parts) {
        c.error(
            &format!("{field}.parts"),
            format!(
                "parts is {}: give 2 to {max} sessions (each is a connection to the database)",
                partition.parts
            ),
        );
    }
    if let Err(e) = crate::source::split::parse_column(&partition.column) {
        c.error(&format!("{field}.column"), e);
        return;
    }
    if let Some(sql) =
        crate::source::statement::with_placeholder_literals(&sql.query, Dialect::Postgres)
        && crate::source::statement::check_query(&sql, Some(Dialect::Postgres)).is_ok()
        && let Err(e) = crate::source::split::SplitQuery::parse(&sql, &partition.column)
    {
        c.error(&field, e);
    }
}

/// The SQL dialect a query is checked in: `Some(None)` when the URL is in a Secret (either
/// dialect), `None` when the URL is not supported (reported by itself).
fn query_dialect(sql: &SqlSource) -> Option<Option<Dialect>> {
    match &sql.url {
        Some(url) if url.starts_with("sqlite:") => Some(Some(Dialect::Sqlite)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(Some(Dialect::Postgres))
        }
        Some(url) if crate::source::is_mysql_url(url) => Some(Some(Dialect::MySql)),
        Some(_) => None,
        None => Some(None),
    }
}

/// Every query of every resource (report sources, usage sources, PSA defaults), checked once
/// per distinct text and dialect, spread over the cores: parsing thousands of queries is the
/// costliest part of validating a large repository. Empty queries and those whose parameters
/// do not scan are left to their own checks.
fn check_queries(resources: &[LoadedResource]) -> QueryChecks<'_> {
    fn usage(u: &Option<UsageSync>) -> Option<&SqlSource> {
        u.as_ref().and_then(|u| u.source.as_ref()).map(|s| &s.sql)
    }
    let mut sources: Vec<&SqlSource> = Vec::new();
    for r in resources {
        match &r.spec {
            Spec::ReportSchedule(rs) => sources.push(&rs.source.sql),
            Spec::CustomerMapping(cm) => sources.extend(usage(&cm.usage_sync)),
            Spec::DeliveryTarget(dt) => {
                let defaults = dt
                    .connectwise
                    .as_ref()
                    .and_then(|c| c.defaults.as_ref())
                    .into_iter()
                    .chain(dt.autotask.as_ref().and_then(|a| a.defaults.as_ref()));
                for d in defaults {
                    sources.extend(usage(&d.usage_sync));
                }
            }
        }
    }
    let mut keys: Vec<(&str, Option<Dialect>)> = sources
        .into_iter()
        .filter(|s| !s.query.trim().is_empty())
        .filter_map(|s| Some((s.query.as_str(), query_dialect(s)?)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(keys.len().max(1));
    let chunk = keys.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|group| {
                scope.spawn(move || {
                    group
                        .iter()
                        .filter(|(query, _)| crate::source::referenced_params(query).is_ok())
                        .map(|&(query, dialect)| {
                            let checked = crate::source::statement::check_query(query, dialect);
                            ((query, dialect), checked)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a query checking thread panicked"))
            .collect()
    })
}

/// Where the parameter an "unknown query parameter `:name`" message names first appears in
/// `query` (a character offset), skipping `::name` casts.
fn unknown_param_offset(query: &str, message: &str) -> Option<usize> {
    let param = message
        .split_once("unknown query parameter `")?
        .1
        .split_once('`')?
        .0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    query.match_indices(param).find_map(|(at, _)| {
        let after = query[at + param.len()..].chars().next();
        let before = query[..at].chars().next_back();
        (!after.is_some_and(is_ident) && before != Some(':')).then(|| query[..at].chars().count())
    })
}

fn check_report_schedule(
    c: &mut Checker,
    spec: &ReportScheduleSpec,
    targets: &HashMap<(&str, &str), &DeliveryTargetSpec>,
    customer: Option<&String>,
    mapped: &std::collections::HashSet<(&str, &str, &str)>,
) {
    check_schedule(c, "spec.schedule", &spec.schedule);
    check_time_zone(c, "spec.timeZone", &spec.time_zone);
    if let Some(d) = &spec.starting_deadline {
        c.check("spec.startingDeadline", positive_duration(d));
    }
    check_sql(c, "spec.source.sql", &spec.source.sql);
    check_partition(c, "spec.source.sql", &spec.source.sql);
    match crate::source::params::referenced_params(&spec.source.sql.query) {
        Err(message) => {
            let query = &spec.source.sql.query;
            match unknown_param_offset(query, &message) {
                // Located at the parameter itself, so the `line N: ` prefix says nothing more.
                Some(offset) => c.error_in_value(
                    "spec.source.sql.query",
                    query,
                    offset,
                    message
                        .split_once(": ")
                        .map_or(message.clone(), |(_, m)| m.to_string()),
                ),
                None => c.error("spec.source.sql.query", message),
            }
        }
        Ok(names) => {
            let windowed = names
                .iter()
                .any(|n| n == "window_start" || n == "window_end");
            if windowed && spec.source.window == Window::All {
                c.error(
                    "spec.source.window",
                    "the query uses :window_start/:window_end but window is `all` (no bounds): choose previousDay, previousWeek, previousMonth or sinceLastSuccess",
                );
            }
        }
    }
    let mut names = BTreeSet::new();
    for (i, col) in spec.columns.iter().enumerate() {
        let field = format!("spec.columns[{i}].name");
        c.non_empty(&field, &col.name);
        if !names.insert(col.name.as_str()) {
            c.error(&field, format!("column `{}` is listed twice", col.name));
        }
    }
    match &spec.format {
        ReportFormat::Csv(csv) => {
            let d = csv.delimiter.as_bytes();
            if d.len() != 1 || !d[0].is_ascii() || d[0] == b'"' || d[0] == b'\r' || d[0] == b'\n' {
                c.error(
                    "spec.format.csv.delimiter",
                    format!(
                        "delimiter {:?} must be one ASCII character other than a quote or a line break (e.g. \",\", \";\", \"\\t\")",
                        csv.delimiter
                    ),
                );
            }
        }
        ReportFormat::Xlsx(x) => {
            let bad = x.sheet_name.is_empty()
                || x.sheet_name.chars().count() > 31
                || x.sheet_name.contains(['[', ']', ':', '*', '?', '/', '\\'])
                || x.sheet_name.starts_with('\'')
                || x.sheet_name.ends_with('\'');
            if bad {
                c.error(
                    "spec.format.xlsx.sheetName",
                    format!(
                        "sheet name {:?} must be 1-31 characters, without []:*?/\\ and not quoted",
                        x.sheet_name
                    ),
                );
            }
        }
        ReportFormat::Pdf(p) => {
            if let Some(font) = &p.font_file {
                c.non_empty("spec.format.pdf.fontFile", font);
            }
        }
    }
    c.check("spec.fileName", filename::check_file_name(&spec.file_name));
    if spec.deliver_to.is_empty() {
        c.error("spec.deliverTo", "list at least one DeliveryTarget");
    }
    let mut seen = BTreeSet::new();
    for (i, d) in spec.deliver_to.iter().enumerate() {
        let field = format!("spec.deliverTo[{i}].target");
        if !seen.insert(d.target.as_str()) {
            c.error(&field, format!("target `{}` is listed twice", d.target));
            continue;
        }
        match targets.get(&(c.key.namespace.as_str(), d.target.as_str())) {
            None => c.error(
                &field,
                format!(
                    "DeliveryTarget `{}` not found in namespace `{}`",
                    d.target, c.key.namespace
                ),
            ),
            Some(t) if matches!(t.kind(), Some(TargetKind::Webhook(_))) => c.error(
                &field,
                format!(
                    "DeliveryTarget `{}` is a webhook: it receives alerts, not report files \
                     (name it under spec.notify)",
                    d.target
                ),
            ),
            Some(t) if matches!(t.kind(), Some(TargetKind::Email(e)) if e.link.is_none() && !e.attach) => {
                c.error(
                    &field,
                    format!(
                        "DeliveryTarget `{}` has {}",
                        d.target,
                        crate::deliver::email::ALERTS_ONLY
                    ),
                )
            }
            Some(t) => {
                let ns = c.key.namespace.as_str();
                let psa = crate::deliver::psa::check_schedule_delivery(
                    &d.target,
                    t,
                    customer.map(String::as_str),
                    |cust| mapped.contains(&(ns, cust, d.target.as_str())),
                );
                c.check(&field, psa);
            }
        }
    }
    check_notify(c, &spec.notify, targets);
    if spec.retry.attempts == 0 {
        c.error(
            "spec.retry.attempts",
            "expected a whole number from 1 to 4294967295, found `0` (the first attempt counts)",
        );
    }
    c.check(
        "spec.retry.backoff",
        schedule::parse_duration(&spec.retry.backoff).map(drop),
    );
    if spec.history_limit == 0 {
        c.error(
            "spec.historyLimit",
            "expected a whole number from 1 to 4294967295, found `0`",
        );
    }
}

/// `spec.notify`: each name a `webhook` or `email` DeliveryTarget of the namespace, listed once
/// per event.
fn check_notify(
    c: &mut Checker,
    notify: &crate::api::Notify,
    targets: &HashMap<(&str, &str), &DeliveryTargetSpec>,
) {
    let mut seen = BTreeSet::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (event, name) in notify.targets() {
        let i = index.entry(event).or_default();
        let field = format!("spec.notify.{event}[{i}]");
        *i += 1;
        if !seen.insert((event, name)) {
            c.error(&field, format!("`{name}` is listed twice"));
            continue;
        }
        match targets
            .get(&(c.key.namespace.as_str(), name))
            .and_then(|t| t.kind())
        {
            None => c.error(
                &field,
                format!(
                    "DeliveryTarget `{name}` not found in namespace `{}`",
                    c.key.namespace
                ),
            ),
            Some(TargetKind::Webhook(_) | TargetKind::Email(_)) => {}
            Some(other) => c.error(
                &field,
                format!(
                    "DeliveryTarget `{name}` is a {} target: alerts go to a webhook or an email \
                     target",
                    other.key()
                ),
            ),
        }
    }
}

fn check_delivery_target(c: &mut Checker, spec: &DeliveryTargetSpec) {
    for (field, message) in crate::deliver::psa::check_reports(spec) {
        c.error(&field, message);
    }
    let kinds = spec.kinds();
    match kinds.len() {
        0 => {
            c.error(
                "spec",
                format!("choose exactly one of {}", TargetKind::KEYS.join(", ")),
            );
            return;
        }
        1 => {}
        _ => {
            let keys: Vec<_> = kinds.iter().map(|k| k.key()).collect();
            c.error(
                &format!("spec.{}", keys[1]),
                format!(
                    "choose exactly one of {} (found {})",
                    TargetKind::KEYS.join(", "),
                    keys.join(" and ")
                ),
            );
        }
    }
    for kind in kinds {
        let mut problems = Problems::default();
        crate::deliver::spec_of(kind).check(&mut problems);
        for (field, message) in problems.0 {
            c.error(&field, message);
        }
        // A PSA connection's defaults follow the rules of a mapping's own settings.
        let defaults = match kind {
            TargetKind::ConnectWise(cw) => cw
                .defaults
                .as_ref()
                .map(|d| ("spec.connectwise.defaults", d)),
            TargetKind::Autotask(at) => at.defaults.as_ref().map(|d| ("spec.autotask.defaults", d)),
            _ => None,
        };
        if let Some((prefix, d)) = defaults {
            check_psa_settings(c, prefix, &d.usage_sync, &d.ticket_sync, &d.billing);
        }
    }
}

fn check_customer_mapping(
    c: &mut Checker,
    spec: &CustomerMappingSpec,
    targets: &HashMap<(&str, &str), &DeliveryTargetSpec>,
) {
    c.non_empty("spec.customer", &spec.customer);
    let psa = targets.get(&(c.key.namespace.as_str(), spec.psa.target.as_str()));
    let psa_kind = match psa.and_then(|t| t.kind()) {
        None if psa.is_none() => {
            c.error(
                "spec.psa.target",
                format!(
                    "DeliveryTarget `{}` not found in namespace `{}`",
                    spec.psa.target, c.key.namespace
                ),
            );
            None
        }
        None => None,
        Some(k @ (TargetKind::ConnectWise(_) | TargetKind::Autotask(_))) => Some(k),
        Some(other) => {
            c.error(
                "spec.psa.target",
                format!(
                    "DeliveryTarget `{}` is {}, not a PSA connection (connectwise or autotask)",
                    spec.psa.target,
                    other.key()
                ),
            );
            None
        }
    };
    match psa_kind {
        Some(TargetKind::ConnectWise(_)) => {
            match &spec.company.identifier {
                None => c.error(
                    "spec.company.identifier",
                    "ConnectWise companies are matched on their identifier (e.g. ACME01): give company.identifier",
                ),
                Some(id) => c.non_empty("spec.company.identifier", id),
            }
            if spec.company.name.is_some() {
                c.error(
                    "spec.company.name",
                    "ConnectWise companies are matched on identifier, never on name: remove company.name",
                );
            }
            for (field, set) in [
                ("spec.quantityRounding", spec.quantity_rounding.is_some()),
                ("spec.effectiveDate", spec.effective_date.is_some()),
            ] {
                if set {
                    c.error(
                        field,
                        "applies to Autotask units only: ConnectWise additions keep decimals and carry no period rows; remove it",
                    );
                }
            }
        }
        Some(TargetKind::Autotask(_)) => {
            match &spec.company.name {
                None => c.error(
                    "spec.company.name",
                    "Autotask companies are matched on their name: give company.name",
                ),
                Some(name) => c.non_empty("spec.company.name", name),
            }
            if spec.company.identifier.is_some() {
                c.error(
                    "spec.company.identifier",
                    "Autotask companies are matched on name: remove company.identifier",
                );
            }
        }
        _ => {}
    }
    let mut products = BTreeSet::new();
    for (i, contract) in spec.contracts.iter().enumerate() {
        let field = format!("spec.contracts[{i}]");
        c.non_empty(&format!("{field}.product"), &contract.product);
        c.non_empty(&format!("{field}.agreement"), &contract.agreement);
        c.non_empty(&format!("{field}.item"), &contract.item);
        if contract.agreement.chars().count() > 100 {
            c.error(
                &format!("{field}.agreement"),
                "agreement names are at most 100 characters",
            );
        }
        if !products.insert(contract.product.as_str()) {
            c.error(
                &format!("{field}.product"),
                format!("product `{}` is mapped twice", contract.product),
            );
        }
    }
    match spec.settings {
        SettingsSource::General => {
            for (field, set) in [
                ("spec.usageSync", spec.usage_sync.is_some()),
                ("spec.ticketSync", spec.ticket_sync.is_some()),
                ("spec.billing", spec.billing.is_some()),
            ] {
                if set {
                    c.error(
                        field,
                        "ignored with settings: general (the PSA target's defaults apply); remove it or set settings: custom",
                    );
                }
            }
        }
        SettingsSource::Custom => check_psa_settings(
            c,
            "spec",
            &spec.usage_sync,
            &spec.ticket_sync,
            &spec.billing,
        ),
    }
    check_notify(c, &spec.notify.as_notify(), targets);
}

fn check_psa_settings(
    c: &mut Checker,
    prefix: &str,
    usage: &Option<UsageSync>,
    tickets: &Option<TicketSync>,
    billing: &Option<Billing>,
) {
    if let Some(u) = usage {
        if let Some(s) = &u.schedule {
            check_schedule(c, &format!("{prefix}.usageSync.schedule"), s);
        }
        check_time_zone(c, &format!("{prefix}.usageSync.timeZone"), &u.time_zone);
        if let Some(src) = &u.source {
            check_sql(c, &format!("{prefix}.usageSync.source.sql"), &src.sql);
            if src.sql.partition.is_some() {
                c.error(
                    &format!("{prefix}.usageSync.source.sql.partition"),
                    "partition splits a report export; a usage query is read by one session: remove it",
                );
            }
        } else if u.enabled && prefix == "spec" {
            c.error(
                &format!("{prefix}.usageSync.source"),
                "usage sync needs a source: a SQL query returning customer, product, quantity",
            );
        }
    }
    if let Some(t) = tickets
        && let Some(board) = &t.board
    {
        c.non_empty(&format!("{prefix}.ticketSync.board"), board);
    }
    if let Some(b) = billing {
        if let Some(s) = &b.schedule {
            check_schedule(c, &format!("{prefix}.billing.schedule"), s);
        }
        check_time_zone(c, &format!("{prefix}.billing.timeZone"), &b.time_zone);
    }
}

/// Every `*SecretRef` object in a spec, found structurally so that new fields need no code.
pub fn secret_refs(spec: &serde_json::Value, path: &str) -> Vec<(String, SecretRef)> {
    let mut out = Vec::new();
    let mut buf = path.to_string();
    collect_secret_refs(spec, &mut buf, &mut out);
    out
}

/// Walks `value` with one reusable path buffer (specs are walked for every resource).
fn collect_secret_refs(
    value: &serde_json::Value,
    path: &mut String,
    out: &mut Vec<(String, SecretRef)>,
) {
    use std::fmt::Write as _;
    let len = path.len();
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if !(v.is_object() || v.is_array()) {
                    continue;
                }
                path.push('.');
                path.push_str(k);
                if k.ends_with("SecretRef")
                    && let Ok(r) = serde_json::from_value::<SecretRef>(v.clone())
                {
                    out.push((path.clone(), r));
                } else {
                    collect_secret_refs(v, path, out);
                }
                path.truncate(len);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if !(v.is_object() || v.is_array()) {
                    continue;
                }
                let _ = write!(path, "[{i}]");
                collect_secret_refs(v, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn check_secret_refs(c: &mut Checker, spec: &serde_json::Value, path: &str) {
    for (field, r) in secret_refs(spec, path) {
        if let Err(m) = check_name(&r.name) {
            c.error(
                &format!("{field}.name"),
                m.replace("name `", "Secret name `"),
            );
        }
        let key_ok = !r.key.is_empty()
            && r.key.len() <= 253
            && r.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && r.key != "."
            && r.key != "..";
        if !key_ok {
            c.error(
                &format!("{field}.key"),
                format!(
                    "invalid Secret key `{}`: use letters, digits, `-`, `_` and `.`",
                    r.key
                ),
            );
        }
    }
}
