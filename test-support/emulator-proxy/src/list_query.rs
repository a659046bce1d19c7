//! Query parameters of ListJobs and SearchJobs: the ones the proxy applies
//! itself and the ones it passes upstream.

/// Maximum `maxResults` of ListJobs and SearchJobs in the MediaConvert API model.
pub const MAX_RESULTS: usize = 20;

const JOB_STATUSES: &[&str] = &["SUBMITTED", "PROGRESSING", "COMPLETE", "CANCELED", "ERROR"];
const ORDERS: &[&str] = &["ASCENDING", "DESCENDING"];

/// Query of a ListJobs or SearchJobs request, split into the parameters the
/// proxy applies itself and those it passes upstream.
pub struct ListQuery {
    pub status: Option<String>,
    pub descending: bool,
    pub max_results: usize,
    pub next_token: Option<String>,
    passed_upstream: Vec<(String, String)>,
}

impl ListQuery {
    /// Parses the query and validates the parameters the proxy applies.
    /// The error is the message of a BadRequestException.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut list = Self {
            status: None,
            // MediaConvert's ListJobs returns the most recently created jobs first.
            descending: true,
            max_results: MAX_RESULTS,
            next_token: None,
            passed_upstream: Vec::new(),
        };
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
        for (key, value) in pairs.into_owned() {
            match key.as_str() {
                "status" => list.status = Some(one_of(&key, value, JOB_STATUSES)?),
                "order" => list.descending = one_of(&key, value, ORDERS)? == "DESCENDING",
                "maxResults" => list.max_results = max_results(&value)?,
                "nextToken" => list.next_token = Some(value),
                _ => list.passed_upstream.push((key, value)),
            }
        }
        Ok(list)
    }

    /// Returns the value of a parameter that the proxy passes upstream, such
    /// as `queue` or `inputFile`.
    pub fn upstream_param(&self, key: &str) -> Option<&str> {
        let mut pairs = self.passed_upstream.iter();
        let (_, value) = pairs.find(|(name, _)| name == key)?;
        Some(value.as_str())
    }

    /// Returns the offset that a forwarded list's `nextToken` carries.
    pub fn offset(&self) -> Result<usize, String> {
        self.next_token.as_deref().map_or(Ok(0), next_token)
    }

    /// Returns the upstream path and query for the page after `token`.
    ///
    /// NOTE: this query differs from the one the client signed, so fakecloud
    /// started with `--verify-sigv4` rejects it unless the access key ID starts
    /// with `test`.
    pub fn upstream_path(&self, path: &str, token: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(&self.passed_upstream);
        query.append_pair("maxResults", &MAX_RESULTS.to_string());
        query.append_pair("order", "ASCENDING");
        if let Some(token) = token {
            query.append_pair("nextToken", token);
        }
        format!("{path}?{}", query.finish())
    }
}

fn one_of(key: &str, value: String, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&value.as_str()) {
        return Ok(value);
    }
    Err(format!(
        "'{key}' must be one of [{}], got '{value}'.",
        allowed.join(", ")
    ))
}

fn max_results(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(count) if (1..=MAX_RESULTS).contains(&count) => Ok(count),
        _ => Err(format!(
            "maxResults must be between 1 and {MAX_RESULTS}, got '{value}'."
        )),
    }
}

fn next_token(value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("nextToken '{value}' is invalid; pass a token from a previous page."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_defaults_to_descending() {
        let query = ListQuery::parse(None).unwrap();
        assert!(query.descending);
        assert_eq!(query.max_results, MAX_RESULTS);
        assert_eq!(query.offset(), Ok(0));
        assert_eq!(query.status, None);
    }

    #[test]
    fn list_query_keeps_only_upstream_parameters() {
        let query = ListQuery::parse(Some(
            "status=ERROR&order=ASCENDING&maxResults=5&nextToken=10&queue=arn%3Aq",
        ))
        .unwrap();
        assert_eq!(query.status.as_deref(), Some("ERROR"));
        assert!(!query.descending);
        assert_eq!(query.max_results, 5);
        assert_eq!(query.offset(), Ok(10));
        let path = query.upstream_path("/2017-08-29/jobs", Some("20"));
        assert_eq!(
            path,
            "/2017-08-29/jobs?queue=arn%3Aq&maxResults=20&order=ASCENDING&nextToken=20"
        );
    }

    #[test]
    fn list_query_rejects_invalid_values() {
        let cases = [
            ("status=DONE", "'status' must be one of"),
            ("order=UP", "'order' must be one of"),
            ("maxResults=0", "maxResults must be between 1 and 20"),
            ("maxResults=21", "maxResults must be between 1 and 20"),
            ("nextToken=abc", "nextToken 'abc' is invalid"),
        ];
        for (query, expected) in cases {
            let parsed = ListQuery::parse(Some(query));
            let error = parsed.and_then(|query| query.offset()).unwrap_err();
            assert!(error.contains(expected), "{query}: {error}");
        }
    }
}
