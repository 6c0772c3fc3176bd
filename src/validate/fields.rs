//! Checks of single field values that several resources and every target kind share (hosts,
//! directories, mailboxes, URLs, login users), and [`Problems`], the list a kind's own checks
//! report into. A leaf: it names no resource or transport, so each transport's file can use it
//! while validation uses the transports' checks.

/// Problems found in one resource's fields: (field path under the resource, message). The
/// validator locates each one in the file.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    /// A problem at `field`.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }

    /// A problem at `field` when `result` is one.
    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.error(field, message);
        }
    }

    /// A problem at `field` when `value` is blank.
    pub fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.error(field, "must not be empty");
        }
    }
}

/// Port 0, in the words a port out of range gets when the YAML is read.
pub const PORT_ZERO: &str = "expected a port number from 1 to 65535, found `0`";

/// `maxConnections`: unset, or 1 to [`crate::api::MAX_MAX_CONNECTIONS`].
pub fn check_max_connections(n: Option<u32>) -> Result<(), String> {
    let max = crate::api::MAX_MAX_CONNECTIONS;
    match n {
        Some(n) if n == 0 || n > max => Err(format!("must be between 1 and {max}, got {n}")),
        _ => Ok(()),
    }
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

/// A directory on a remote server: not empty, no NUL or line break.
pub fn check_remote_dir(dir: &str) -> Result<(), String> {
    if dir.is_empty() {
        return Err("must not be empty (use / or . for the login directory)".into());
    }
    if dir.contains('\0') || dir.contains('\n') {
        return Err("must not contain NUL or line breaks".into());
    }
    Ok(())
}

/// A directory inside a hosted SFTP user's jail: relative, no `..`, NUL or backslash.
pub fn check_jail_dir(dir: &str) -> Result<(), String> {
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

/// Whether `user` can be a hosted SFTP login name: 1-32 letters, digits, `-`, `_`, `.`, not
/// starting with `-` or `.` (it names a directory under the server's `users/`).
pub fn is_login_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !user.starts_with(['-', '.'])
}

/// A hosted SFTP connection's `user`, as validation words it ([`is_login_user`]).
pub fn check_login_user(user: &str) -> Result<(), String> {
    if is_login_user(user) {
        Ok(())
    } else {
        Err(format!(
            "invalid login user `{user}`: 1-32 letters, digits, `-`, `_` or `.`, not starting with `-` or `.`"
        ))
    }
}

/// `addr@domain` or `Name <addr@domain>`.
pub fn check_mailbox(s: &str) -> Result<(), String> {
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

/// An `http(s)://` URL with a host.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}
