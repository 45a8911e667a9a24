//! Request path hygiene and the path sent upstream.

use std::borrow::Cow;

use crate::RouteMatch;

/// Why a request path is refused (the gateway answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (e.g. `*` or an absolute URL).
    #[error("path must start with /")]
    NotAbsolute,
    /// A `.` or `..` segment, literal or with `%2e` in it.
    #[error("path has a . or .. segment")]
    DotSegment,
    /// A NUL byte, literal or `%00`.
    #[error("path contains NUL")]
    Nul,
    /// A backslash, literal or `%5c`.
    #[error("path contains a backslash")]
    Backslash,
}

/// Checks a raw request path (without query) and collapses runs of `/`.
///
/// Refuses, with the reason:
/// - a path that does not start with `/`;
/// - a `.` or `..` segment, also when spelled with `%2e`/`%2E` (`/a/%2e%2e/b`),
///   because an upstream that decodes before resolving would climb out of the
///   routed prefix;
/// - NUL or backslash, literal or percent-encoded (`%00`, `%5c`), because
///   some origins end strings at NUL or read `\` as a separator.
///
/// Then collapses every run of `/` into one (`/a//b/` becomes `/a/b/`), so
/// `//admin` cannot slip past a route for `/admin`. Nothing else is decoded
/// or changed; a path that needs no change is returned borrowed.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut doubled = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::Backslash),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some(b"00") => return Err(PathError::Nul),
                Some([b'5', b'c' | b'C']) => return Err(PathError::Backslash),
                _ => {}
            },
            b'/' if i > 0 && bytes[i - 1] == b'/' => doubled = true,
            _ => {}
        }
    }
    if path.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    if !doubled {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    Ok(Cow::Owned(out))
}

/// `.` or `..`, where each dot may be written `%2e` or `%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let mut rest = seg.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// The path sent upstream for `path` (the path that matched, without query;
/// the caller appends the query).
///
/// - With `rewrite`, the template expanded from the match's parameters
///   (`rewrite` wins over `strip_prefix` when both are set).
/// - With `strip_prefix`, the prefix removed on a segment boundary: `/api`
///   turns `/api/users` into `/users` and `/api` or `/api/` into `/`, but
///   leaves `/apix` alone. A trailing `/` in `strip_prefix` is ignored.
/// - Otherwise `path` unchanged.
///
/// The result always starts with `/`.
pub fn upstream_path(
    route: &edgegate_config::Route,
    matched: &RouteMatch<'_>,
    path: &str,
) -> String {
    let out = if let Some(rewrite) = &route.rewrite {
        crate::expand(rewrite, &matched.params)
    } else if let Some(prefix) = &route.strip_prefix {
        let prefix = prefix.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some("") => "/".to_owned(),
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => path.to_owned(),
        }
    } else {
        path.to_owned()
    };
    if out.starts_with('/') {
        out
    } else {
        format!("/{out}")
    }
}
