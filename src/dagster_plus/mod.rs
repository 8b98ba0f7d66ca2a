//! The Dagster+ storage API: what the open-source `dagster-cloud` package's
//! `GraphQLEventLogStorage`, `GraphQLRunStorage` and compute-log manager send, answered from
//! assetlog's log, views and registry, so a real Dagster process can use assetlog as its
//! control plane's metadata store.
//!
//! - [`serdes`]: Dagster's serialized events to typed events and back.
//! - [`store`]: runs, snapshots, dynamic partitions and compute logs (the `meta` family).
//! - [`ops`]: one function per GraphQL operation, dispatched on the operation name read
//!   from the query text (the client sends no `operationName`).
//!
//! The HTTP side (auth by `Dagster-Cloud-Api-Token`, scope by `Dagster-Cloud-Deployment`,
//! `/store_events`, `/gen_logs_url`) is `crate::api::dagster_plus`.

pub mod ops;
pub mod serdes;
pub mod store;

/// The operation name of a GraphQL document: the name after the first `query` or
/// `mutation` keyword (fragments come first in the client's documents).
pub fn operation_name(query: &str) -> Option<&str> {
    let bytes = query.as_bytes();
    for kw in ["query", "mutation"] {
        let mut from = 0;
        while let Some(i) = query[from..].find(kw) {
            let at = from + i;
            let before_ok = at == 0 || !is_name_byte(bytes[at - 1]);
            let after = at + kw.len();
            if before_ok && bytes.get(after).is_some_and(|b| b.is_ascii_whitespace()) {
                let rest = query[after..].trim_start();
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end > 0 {
                    return Some(&rest[..end]);
                }
            }
            from = after;
        }
    }
    None
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::operation_name;

    #[test]
    fn operation_names_come_from_the_text() {
        let q = "fragment EventLogEntryFragment on EventLogEntry { level }\n    query getRecordsForRun($runId: String!) { eventLogs { getRecordsForRun(runId: $runId) { cursor } } }";
        assert_eq!(operation_name(q), Some("getRecordsForRun"));
        let m = "\n    mutation StoreEvent($eventRecord: EventLogEntryInput!) {\n eventLogs { StoreEvent(eventRecord: $eventRecord) { ok } } }";
        assert_eq!(operation_name(m), Some("StoreEvent"));
        assert_eq!(operation_name("{ runs { hasRun } }"), None);
        assert_eq!(
            operation_name("query Secrets($locationName: String) { x }"),
            Some("Secrets")
        );
    }
}
