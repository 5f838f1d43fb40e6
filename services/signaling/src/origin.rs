//! Which web pages may open a socket: the `Origin` check of the upgrade.
//!
//! A browser sends `Origin` with every WebSocket upgrade and lets any page open a
//! socket to any host, so without this check any web site could make its visitors'
//! browsers join rooms. Clients that are not browsers send no `Origin`; they are
//! let through, since a header they choose themselves proves nothing.

use actix_web::http::Uri;

/// The allow-list from `server.allowed_origins`, parsed once at start.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    any: bool,
    /// Exact origins, lowercase, `scheme://host[:port]`.
    origins: Vec<String>,
    /// Host names allowed with any scheme and port.
    hosts: Vec<String>,
}

impl OriginPolicy {
    /// `entries`: `*`, exact origins (`https://call.example.org`), or bare host
    /// names (`localhost`) that allow any scheme and port.
    pub fn new(entries: &[String]) -> Self {
        let mut policy = Self {
            any: false,
            origins: Vec::new(),
            hosts: Vec::new(),
        };
        for entry in entries {
            let entry = entry.trim().trim_end_matches('/').to_ascii_lowercase();
            if entry == "*" {
                policy.any = true;
            } else if entry.contains("://") {
                policy.origins.push(entry);
            } else if !entry.is_empty() {
                policy.hosts.push(entry);
            }
        }
        policy
    }

    /// Whether a socket whose upgrade carried `origin` (and `host`) may open. The
    /// node's own origin (the page it served itself) is always allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        // `null` (sandboxed frames, file://) and anything unparsable stop here.
        let Ok(uri) = origin.parse::<Uri>() else {
            return false;
        };
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        if !matches!(scheme, "http" | "https") || uri.path() != "/" {
            return false;
        }
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_str())) {
            return true;
        }
        let name = authority.host();
        self.hosts.iter().any(|h| h == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_default_allows_the_own_origin_and_localhost_only() {
        let p = policy(&["localhost", "127.0.0.1", "[::1]"]);
        let host = Some("call.example.org");
        assert!(p.allows(None, host));
        assert!(p.allows(Some("https://call.example.org"), host));
        assert!(p.allows(Some("http://localhost:5173"), host));
        assert!(p.allows(Some("http://127.0.0.1:8080"), host));
        assert!(p.allows(Some("http://[::1]:8080"), host));
        for bad in [
            "null",
            "file://",
            "https://evil.example",
            "https://call.example.org.evil.example",
            "https://localhost.evil.example",
            "chrome-extension://abc",
            "https://call.example.org/path",
            "\u{fffd}",
            "",
        ] {
            assert!(!p.allows(Some(bad), host), "{bad}");
        }
    }

    #[test]
    fn listed_origins_and_the_wildcard() {
        let p = policy(&["https://app.example.com/"]);
        assert!(p.allows(Some("https://APP.example.com"), Some("node:8080")));
        assert!(!p.allows(Some("http://app.example.com"), Some("node:8080")));
        assert!(!p.allows(Some("http://localhost:1"), Some("node:8080")));
        assert!(policy(&["*"]).allows(Some("null"), None));
    }
}
