//! Metrics exposition for every scraper: OpenMetrics text to those that ask for it (Prometheus
//! does), the classic Prometheus text format (0.0.4) to the others — `promtool check metrics`,
//! `curl`, older agents — as the Prometheus client libraries do. The metrics are encoded once, in
//! OpenMetrics by `prometheus-client`; the classic text is derived from it.

/// Content type of OpenMetrics text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body and content type that answer a scrape whose `Accept` header is `accept`.
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (&'static str, String) {
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (OPENMETRICS, openmetrics)
    } else {
        (PROMETHEUS_TEXT, to_prometheus_text(&openmetrics))
    }
}

/// OpenMetrics text as the classic text format: a counter family is named after its samples
/// (`x_total`), and the `# UNIT` and `# EOF` lines, which the classic format lacks, go. Gauges,
/// histograms and their samples read the same in both.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS_TEXT: &str = "\
# HELP idn_requests Inference requests answered.
# TYPE idn_requests counter
idn_requests_total{model=\"m\",status=\"200\"} 3
# HELP idn_request_duration_seconds Time to answer.
# TYPE idn_request_duration_seconds histogram
# UNIT idn_request_duration_seconds seconds
idn_request_duration_seconds_bucket{le=\"+Inf\"} 3
idn_request_duration_seconds_sum 0.5
idn_request_duration_seconds_count 3
# HELP idn_model_ready 1 when serving.
# TYPE idn_model_ready gauge
idn_model_ready{model=\"m\"} 1
# EOF
";

    #[test]
    fn counters_take_their_samples_name_and_unit_and_eof_lines_go() {
        let text = to_prometheus_text(OPENMETRICS_TEXT);
        assert!(text.starts_with(
            "# HELP idn_requests_total Inference requests answered.\n\
             # TYPE idn_requests_total counter\n\
             idn_requests_total{model=\"m\",status=\"200\"} 3\n"
        ));
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        assert!(text.contains("# TYPE idn_request_duration_seconds histogram\n"));
        assert!(text.ends_with("# TYPE idn_model_ready gauge\nidn_model_ready{model=\"m\"} 1\n"));
    }

    #[test]
    fn openmetrics_goes_to_those_who_ask_for_it() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";
        let (content_type, body) = negotiate(OPENMETRICS_TEXT.to_owned(), Some(prometheus));
        assert_eq!(
            (content_type, body.as_str()),
            (OPENMETRICS, OPENMETRICS_TEXT)
        );
        for accept in [None, Some("*/*"), Some("text/plain")] {
            assert_eq!(
                negotiate(OPENMETRICS_TEXT.to_owned(), accept).0,
                PROMETHEUS_TEXT
            );
        }
    }
}
