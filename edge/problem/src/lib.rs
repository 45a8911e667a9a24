//! RFC 9457 `application/problem+json` bodies for every error the gateway
//! itself produces (upstream errors pass through untouched). One place so the
//! edge library and the host answer in the same shape.

/// Media type of problem bodies.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error the gateway answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code, e.g. `route_not_found`.
    pub code: &'static str,
    /// Human-readable explanation for this occurrence (never secrets).
    pub detail: String,
}

impl Problem {
    /// A problem with `status`, a stable `code` and a `detail` text.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// The JSON body: `type`, `title`, `status`, `detail`, `code`, `request_id`.
    pub fn to_json(&self, request_id: &str) -> Vec<u8> {
        serde_json::json!({
            "type": format!("https://edgegate.dev/problems/{}", self.code.replace('_', "-")),
            "title": title(self.status),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "request_id": request_id,
        })
        .to_string()
        .into_bytes()
    }
}

/// Reason phrase for the statuses the gateway produces.
pub fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_status_code_and_request_id() {
        let body = Problem::new(404, "route_not_found", "no route for GET /x").to_json("abc");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["title"], "Not Found");
        assert_eq!(v["code"], "route_not_found");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["type"], "https://edgegate.dev/problems/route-not-found");
    }
}
