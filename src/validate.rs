//! Semantic validation: everything the types alone cannot say. References resolve, time zones
//! and cron expressions parse, times and days are in range, names are unique, exactly one
//! variant is chosen. Every problem is reported at once, each located at its field.

use std::collections::{BTreeSet, HashMap};

use crate::api::*;
use crate::diagnostic::Diagnostic;
use crate::filename;
use crate::load::{LoadedResource, Origin};
use crate::schedule;
use crate::source::Dialect;

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
            let scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
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
                        "unsupported database URL `{}`: expected sqlite:PATH, sqlite://PATH or postgres://...",
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

/// The SQL dialect a query is checked in: `Some(None)` when the URL is in a Secret (either
/// dialect), `None` when the URL is not supported (reported by itself).
fn query_dialect(sql: &SqlSource) -> Option<Option<Dialect>> {
    match &sql.url {
        Some(url) if url.starts_with("sqlite:") => Some(Some(Dialect::Sqlite)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(Some(Dialect::Postgres))
        }
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

/// A host to connect to: a host name (RFC 1123: labels of letters, digits and `-`, at most
/// 63 characters each and 253 in all) or an IP address. A URL, a port or a path written into
/// the host gets a hint saying where it goes instead.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if let Some((scheme, rest)) = host.split_once("://") {
        let bare = rest.split(['/', ':']).next().unwrap_or(rest);
        return Err(format!(
            "`{host}` is a URL: write the host without {scheme}:// (`{bare}`); the port goes in `port`"
        ));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        && inner.parse::<std::net::Ipv6Addr>().is_ok()
    {
        return Err(format!(
            "`{host}`: write an IPv6 address without brackets (`{inner}`)"
        ));
    }
    if let Some((name, port)) = host.rsplit_once(':')
        && !name.contains(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "`{host}` holds a port: write the host alone (`{name}`); the port goes in `port`"
        ));
    }
    if let Some((name, _)) = host.split_once('/') {
        return Err(format!(
            "`{host}` holds a path: write the host alone (`{name}`); the directory goes in `directory`"
        ));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        let what = match c {
            ' ' => "a space".to_string(),
            c if c.is_whitespace() || c.is_control() => format!("the character {c:?}"),
            c => format!("`{c}`"),
        };
        return Err(format!(
            "`{host}` is not a host name: it contains {what} (a host name has letters, digits, `-` and `.`, e.g. ftp.example.com, or is an IP address)"
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err(format!(
            "`{host}` is longer than 253 characters: not a host name"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{host}` is not a host name: it has an empty part between dots"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "`{host}` is not a host name: `{label}` is longer than 63 characters"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{host}` is not a host name: `{label}` starts or ends with `-`"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{host}` is neither an IP address nor a host name (a host name does not end in a number)"
        ));
    }
    Ok(())
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

/// Port 0, in the words a port out of range gets when the YAML is read.
const PORT_ZERO: &str = "expected a port number from 1 to 65535, found `0`";

const VARIANTS: &str = "ftp, sftp, email, localDir, hostedSftp, connectwise, autotask";

fn check_delivery_target(c: &mut Checker, spec: &DeliveryTargetSpec) {
    for (field, message) in crate::deliver::psa::check_reports(spec) {
        c.error(&field, message);
    }
    let kinds = spec.kinds();
    match kinds.len() {
        0 => {
            c.error("spec", format!("choose exactly one of {VARIANTS}"));
            return;
        }
        1 => {}
        _ => {
            let keys: Vec<_> = kinds.iter().map(|k| k.key()).collect();
            c.error(
                &format!("spec.{}", keys[1]),
                format!(
                    "choose exactly one of {VARIANTS} (found {})",
                    keys.join(" and ")
                ),
            );
        }
    }
    for kind in kinds {
        match kind {
            TargetKind::Ftp(f) => {
                c.check("spec.ftp.host", check_host(&f.host));
                c.non_empty("spec.ftp.username", &f.username);
                if f.port == Some(0) {
                    c.error("spec.ftp.port", PORT_ZERO);
                }
                c.check("spec.ftp.directory", check_remote_dir(&f.directory));
            }
            TargetKind::Sftp(s) => {
                c.check("spec.sftp.host", check_host(&s.host));
                c.non_empty("spec.sftp.username", &s.username);
                if s.port == 0 {
                    c.error("spec.sftp.port", PORT_ZERO);
                }
                c.check("spec.sftp.directory", check_remote_dir(&s.directory));
                match (&s.private_key_secret_ref, &s.password_secret_ref) {
                    (Some(_), Some(_)) => c.error(
                        "spec.sftp.passwordSecretRef",
                        "give either privateKeySecretRef or passwordSecretRef, not both",
                    ),
                    (None, None) => c.error(
                        "spec.sftp",
                        "missing credentials: give privateKeySecretRef (recommended) or passwordSecretRef",
                    ),
                    _ => {}
                }
                if s.passphrase_secret_ref.is_some() && s.private_key_secret_ref.is_none() {
                    c.error(
                        "spec.sftp.passphraseSecretRef",
                        "a passphrase needs privateKeySecretRef",
                    );
                }
                if s.host_keys.is_empty() {
                    c.error(
                        "spec.sftp.hostKeys",
                        "pin at least one host key (get it with `ferry keyscan HOST:PORT`)",
                    );
                }
                for (i, k) in s.host_keys.iter().enumerate() {
                    c.check(
                        &format!("spec.sftp.hostKeys[{i}]"),
                        crate::ssh::parse_public_key(k).map(|_| ()),
                    );
                }
            }
            TargetKind::Email(e) => check_email(c, e),
            TargetKind::LocalDir(l) => c.non_empty("spec.localDir.path", &l.path),
            TargetKind::HostedSftp(h) => {
                c.non_empty("spec.hostedSftp.connectionName", &h.connection_name);
                c.check("spec.hostedSftp.user", check_login_user(&h.user));
                for (i, k) in h.public_keys.iter().enumerate() {
                    c.check(
                        &format!("spec.hostedSftp.publicKeys[{i}]"),
                        crate::ssh::parse_public_key(k).map(|_| ()),
                    );
                }
                c.check("spec.hostedSftp.directory", check_jail_dir(&h.directory));
            }
            TargetKind::ConnectWise(cw) => {
                match (&cw.site, &cw.base_url) {
                    (Some(_), Some(_)) => c.error(
                        "spec.connectwise.baseUrl",
                        "give either site or baseUrl, not both",
                    ),
                    (None, None) => c.error(
                        "spec.connectwise",
                        "missing endpoint: give site (e.g. api-na.myconnectwise.net) or baseUrl",
                    ),
                    (Some(site), None) => {
                        if site.contains("://") || site.contains('/') {
                            c.error(
                                "spec.connectwise.site",
                                "give a host name only (e.g. api-na.myconnectwise.net); use baseUrl for a full URL",
                            );
                        } else {
                            c.check("spec.connectwise.site", check_host(site));
                        }
                    }
                    (None, Some(url)) => c.check("spec.connectwise.baseUrl", check_http_url(url)),
                }
                c.non_empty("spec.connectwise.companyId", &cw.company_id);
                c.non_empty("spec.connectwise.clientId", &cw.client_id);
                if let Some(d) = &cw.defaults {
                    check_psa_settings(
                        c,
                        "spec.connectwise.defaults",
                        &d.usage_sync,
                        &d.ticket_sync,
                        &d.billing,
                    );
                }
            }
            TargetKind::Autotask(at) => {
                c.non_empty("spec.autotask.username", &at.username);
                if let Some(url) = &at.zone_discovery_url {
                    c.check("spec.autotask.zoneDiscoveryUrl", check_http_url(url));
                }
                if let Some(d) = &at.defaults {
                    check_psa_settings(
                        c,
                        "spec.autotask.defaults",
                        &d.usage_sync,
                        &d.ticket_sync,
                        &d.billing,
                    );
                }
            }
        }
    }
}

fn check_email(c: &mut Checker, e: &EmailTarget) {
    c.check("spec.email.smtp.host", check_host(&e.smtp.host));
    if e.smtp.port == Some(0) {
        c.error("spec.email.smtp.port", PORT_ZERO);
    }
    if e.smtp.password_secret_ref.is_some() && e.smtp.username.is_none() {
        c.error("spec.email.smtp.username", "a password needs a username");
    }
    if e.smtp.username.is_some() && e.smtp.password_secret_ref.is_none() {
        c.error(
            "spec.email.smtp.passwordSecretRef",
            "AUTH needs a password: give passwordSecretRef, or remove username",
        );
    }
    if e.smtp.username.is_some() && e.smtp.tls == crate::api::SmtpTls::None {
        c.error(
            "spec.email.smtp.tls",
            "AUTH over an unencrypted connection would send the password in clear: use tls: starttls or implicit, or remove username",
        );
    }
    c.check("spec.email.from", check_mailbox(&e.from));
    if e.to.is_empty() {
        c.error("spec.email.to", "list at least one recipient");
    }
    let mut seen = BTreeSet::new();
    for (i, to) in e.to.iter().enumerate() {
        let field = format!("spec.email.to[{i}]");
        c.check(&field, check_mailbox(to));
        if !seen.insert(to.to_ascii_lowercase()) {
            c.error(&field, format!("recipient `{to}` is listed twice"));
        }
    }
    let mut subject_tokens: Vec<&str> = filename::FILE_NAME_TOKENS.to_vec();
    subject_tokens.push("fileName");
    c.check(
        "spec.email.subject",
        filename::check_template(&e.subject, &subject_tokens),
    );
    let mut body_tokens = subject_tokens.clone();
    body_tokens.extend(["link", "expires", "rows"]);
    c.check(
        "spec.email.body",
        filename::check_template(&e.body, &body_tokens),
    );
    match (&e.link, e.attach) {
        (None, false) => c.error(
            "spec.email",
            "missing link storage: give link.s3 for an expiring link, or set attach: true",
        ),
        (Some(link), _) => {
            c.check(
                "spec.email.link.s3.endpoint",
                check_http_url(&link.s3.endpoint),
            );
            c.non_empty("spec.email.link.s3.bucket", &link.s3.bucket);
            if link
                .s3
                .prefix
                .split('/')
                .any(|seg| seg == "." || seg == ".." || seg.chars().any(char::is_control))
            {
                c.error(
                    "spec.email.link.s3.prefix",
                    "a key prefix cannot contain `.` or `..` segments or control characters",
                );
            }
            match schedule::parse_duration(&link.expires_in) {
                Err(m) => c.error("spec.email.link.expiresIn", m),
                Ok(d) if d.is_zero() || d.as_secs() > 7 * 24 * 3600 => c.error(
                    "spec.email.link.expiresIn",
                    format!(
                        "`{}` is out of range: a presigned link lasts from 1s to 7d",
                        link.expires_in
                    ),
                ),
                Ok(_) => {}
            }
            if e.attach {
                c.error(
                    "spec.email.attach",
                    "attach: true sends the file itself; remove link, or set attach: false",
                );
            }
        }
        (None, true) => {}
    }
    if e.link.is_some() && !e.body.contains("{link}") && !e.attach {
        c.error(
            "spec.email.body",
            "the body must contain {link}, or recipients never see where the report is",
        );
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

fn check_remote_dir(dir: &str) -> Result<(), String> {
    if dir.is_empty() {
        return Err("must not be empty (use / or . for the login directory)".into());
    }
    if dir.contains('\0') || dir.contains('\n') {
        return Err("must not contain NUL or line breaks".into());
    }
    Ok(())
}

fn check_jail_dir(dir: &str) -> Result<(), String> {
    if dir.starts_with('/') {
        return Err(format!(
            "`{dir}` must be relative to the user's jail (e.g. reports/)"
        ));
    }
    if dir.split('/').any(|part| part == "..") {
        return Err(format!("`{dir}` must not contain `..`"));
    }
    if dir.contains('\0') || dir.contains('\\') {
        return Err(format!("`{dir}` must not contain NUL or backslashes"));
    }
    Ok(())
}

fn check_login_user(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !user.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid login user `{user}`: 1-32 letters, digits, `-`, `_` or `.`, not starting with `-` or `.`"
        ))
    }
}

/// `addr@domain` or `Name <addr@domain>`.
fn check_mailbox(s: &str) -> Result<(), String> {
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => &s[i + 1..s.len() - 1],
        _ => s.trim(),
    };
    let ok = match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !addr.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not an email address (expected user@example.com or \"Name <user@example.com>\")"
        ))
    }
}

fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}
