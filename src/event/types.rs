//! Event type names: Dagster's `DagsterEventType` plus assetlog's own (definitions, backfills).

use serde::{Deserialize, Serialize};

macro_rules! event_types {
    ($( $variant:ident = $name:literal ),* $(,)?) => {
        /// Every event type assetlog knows. Frozen: append new variants at the end.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventType {
            $( $variant, )*
        }

        impl EventType {
            /// Every known type, in declaration order.
            pub const ALL: &'static [EventType] = &[ $( EventType::$variant, )* ];

            /// The canonical name (`RUN_*` spelling for run events).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( EventType::$variant => $name, )*
                }
            }
        }
    };
}

event_types! {
    RunEnqueued = "RUN_ENQUEUED",
    RunDequeued = "RUN_DEQUEUED",
    RunStarting = "RUN_STARTING",
    RunStart = "RUN_START",
    RunSuccess = "RUN_SUCCESS",
    RunFailure = "RUN_FAILURE",
    RunCanceling = "RUN_CANCELING",
    RunCanceled = "RUN_CANCELED",
    StepStart = "STEP_START",
    StepSuccess = "STEP_SUCCESS",
    StepFailure = "STEP_FAILURE",
    StepSkipped = "STEP_SKIPPED",
    StepUpForRetry = "STEP_UP_FOR_RETRY",
    StepRestarted = "STEP_RESTARTED",
    AssetMaterialization = "ASSET_MATERIALIZATION",
    AssetObservation = "ASSET_OBSERVATION",
    AssetMaterializationPlanned = "ASSET_MATERIALIZATION_PLANNED",
    AssetFailedToMaterialize = "ASSET_FAILED_TO_MATERIALIZE",
    AssetWiped = "ASSET_WIPED",
    AssetCheckEvaluationPlanned = "ASSET_CHECK_EVALUATION_PLANNED",
    AssetCheckEvaluation = "ASSET_CHECK_EVALUATION",
    BackfillCreated = "BACKFILL_CREATED",
    BackfillUpdated = "BACKFILL_UPDATED",
    Definitions = "DEFINITIONS",
    LogMessage = "LOG_MESSAGE",
    EngineEvent = "ENGINE_EVENT",
    StepInput = "STEP_INPUT",
    StepOutput = "STEP_OUTPUT",
    StepWorkerStarting = "STEP_WORKER_STARTING",
    StepWorkerStarted = "STEP_WORKER_STARTED",
    ResourceInitStarted = "RESOURCE_INIT_STARTED",
    ResourceInitSuccess = "RESOURCE_INIT_SUCCESS",
    ResourceInitFailure = "RESOURCE_INIT_FAILURE",
    LoadedInput = "LOADED_INPUT",
    HandledOutput = "HANDLED_OUTPUT",
    ObjectStoreOperation = "OBJECT_STORE_OPERATION",
    AssetStoreOperation = "ASSET_STORE_OPERATION",
    StepExpectationResult = "STEP_EXPECTATION_RESULT",
    LogsCaptured = "LOGS_CAPTURED",
    HookCompleted = "HOOK_COMPLETED",
    HookSkipped = "HOOK_SKIPPED",
    HookErrored = "HOOK_ERRORED",
    AlertStart = "ALERT_START",
    AlertSuccess = "ALERT_SUCCESS",
    AlertFailure = "ALERT_FAILURE",
    CodeLocationUpdated = "CODE_LOCATION_UPDATED",
    FreshnessStateChange = "FRESHNESS_STATE_CHANGE",
    FreshnessStateEvaluation = "FRESHNESS_STATE_EVALUATION",
    AssetHealthChanged = "ASSET_HEALTH_CHANGED",
    Unknown = "UNKNOWN",
}

/// What the ingest layer makes of a type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeName {
    Known(EventType),
    /// Not a type assetlog knows, and not a near-miss of one: stored as raw.
    New(String),
    /// Close to a known name: almost certainly a typo, so rejected with a suggestion.
    Misspelled {
        given: String,
        suggestion: EventType,
    },
}

impl EventType {
    /// Is this an informational type stored as [`crate::event::EngineEvent`]?
    pub fn is_engine(self) -> bool {
        (self as u8) >= (EventType::EngineEvent as u8) && self != EventType::Unknown
    }

    /// Parse a name: canonical `RUN_*`, legacy `PIPELINE_*`, or a new type.
    ///
    /// Rule for names assetlog does not know: if the name is within edit distance 2 of a
    /// known name, or equals one ignoring case, it is a typo and is rejected; otherwise it
    /// is a type from a newer agent and is stored as raw.
    pub fn parse(name: &str) -> TypeName {
        let canonical = match name.strip_prefix("PIPELINE_") {
            Some(rest) => format!("RUN_{rest}"),
            None => name.to_string(),
        };
        if let Some(t) = EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == canonical && *t != EventType::Unknown)
        {
            return TypeName::Known(t);
        }
        let upper = canonical.to_ascii_uppercase();
        let mut best: Option<(usize, EventType)> = None;
        for t in EventType::ALL.iter().copied() {
            if t == EventType::Unknown {
                continue;
            }
            let d = if t.as_str() == upper {
                0
            } else {
                edit_distance(&upper, t.as_str())
            };
            if d <= 2 && best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, t));
            }
        }
        match best {
            Some((_, suggestion)) => TypeName::Misspelled {
                given: name.to_string(),
                suggestion,
            },
            None => TypeName::New(name.to_string()),
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Levenshtein distance, for typo detection on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_pipeline_names_map_to_run_types() {
        assert_eq!(
            EventType::parse("PIPELINE_SUCCESS"),
            TypeName::Known(EventType::RunSuccess)
        );
        assert_eq!(
            EventType::parse("RUN_SUCCESS"),
            TypeName::Known(EventType::RunSuccess)
        );
    }

    #[test]
    fn near_misses_are_typos_and_far_names_are_new() {
        assert_eq!(
            EventType::parse("ASSET_MATERIALISATION"),
            TypeName::Misspelled {
                given: "ASSET_MATERIALISATION".into(),
                suggestion: EventType::AssetMaterialization
            }
        );
        assert!(matches!(
            EventType::parse("asset_observation"),
            TypeName::Misspelled { .. }
        ));
        assert_eq!(
            EventType::parse("FRESHNESS_POLICY_BREACHED"),
            TypeName::New("FRESHNESS_POLICY_BREACHED".into())
        );
        assert!(matches!(
            EventType::parse("UNKNOWN"),
            TypeName::Misspelled { .. } | TypeName::New(_)
        ));
    }

    #[test]
    fn engine_types_are_the_informational_ones() {
        assert!(EventType::EngineEvent.is_engine());
        assert!(EventType::AssetHealthChanged.is_engine());
        assert!(!EventType::LogMessage.is_engine());
        assert!(!EventType::Unknown.is_engine());
        assert!(!EventType::RunSuccess.is_engine());
    }
}
