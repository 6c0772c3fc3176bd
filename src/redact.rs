//! Hiding secrets in text before it is shown anywhere (messages, logs, plans, status): the
//! password a URL embeds. A leaf module, so every layer that handles URLs can use it.

/// Whether a URL embeds a password (`scheme://user:password@host`).
pub fn url_has_password(url: &str) -> bool {
    url_password(url).is_some()
}

/// The password a URL embeds (`scheme://user:password@host`), to scrub it from messages.
pub fn url_password(url: &str) -> Option<&str> {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
}

/// Removes a connection URL, and its password when long enough to be recognisable (8
/// characters or more), from the messages a database driver writes (the sources' errors).
#[derive(Clone, Debug)]
pub struct UrlScrubber {
    url: String,
    password: Option<String>,
}

impl UrlScrubber {
    /// A scrubber of `url`.
    pub fn new(url: &str) -> UrlScrubber {
        let password = url_password(url)
            .filter(|p| p.len() >= 8)
            .map(str::to_string);
        UrlScrubber {
            url: url.to_string(),
            password,
        }
    }

    /// `message` with the URL replaced by `(connection URL)` and the password by `***`.
    pub fn clean(&self, message: &str) -> String {
        let mut out = message.replace(&self.url, "(connection URL)");
        if let Some(password) = &self.password {
            out = out.replace(password.as_str(), "***");
        }
        out
    }
}

/// Hides the password of a URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}
