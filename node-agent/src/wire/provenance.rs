//! Provenance: for each batch item, which node and model answered, how (the decision), with
//! what confidence, and through which nodes. It travels in the OIP response `parameters`, as
//! one value when every item agrees and as an array of per-item values when they differ.

use serde_json::{Value, json};

use idn_contract::provenance::{CONFIDENCE, DECISION, DEGRADED, Decision, HOPS, MODEL, NODE, PATH};

use super::message::Parameters;

/// Provenance of one batch item.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Node whose model answered.
    pub node: String,
    /// Model (or ensemble members, joined by '+') that answered.
    pub model: String,
    pub decision: Decision,
    /// Confidence of the answer, as the answering node measures it.
    pub confidence: f64,
    /// Nodes from the entry node to the answering node.
    pub path: Vec<String>,
}

impl Provenance {
    /// Forwards the request took (0 when the entry node answered).
    pub fn hops(&self) -> usize {
        self.path.len().saturating_sub(1)
    }
}

/// Writes the provenance of `items` into response parameters.
pub fn encode(items: &[Provenance], parameters: &mut Parameters) {
    let mut put = |key: &str, values: Vec<Value>| {
        let value = match values.first() {
            Some(first) if values.iter().all(|v| v == first) => first.clone(),
            _ => Value::Array(values),
        };
        parameters.insert(key.to_owned(), value);
    };
    put(NODE, items.iter().map(|p| json!(p.node)).collect());
    put(MODEL, items.iter().map(|p| json!(p.model)).collect());
    put(
        DECISION,
        items.iter().map(|p| json!(p.decision.as_str())).collect(),
    );
    put(
        CONFIDENCE,
        items.iter().map(|p| json!(p.confidence)).collect(),
    );
    put(PATH, items.iter().map(|p| json!(p.path)).collect());
    put(HOPS, items.iter().map(|p| json!(p.hops())).collect());
    let degraded = items.iter().any(|p| p.decision == Decision::Fallback);
    parameters.insert(DEGRADED.to_owned(), json!(degraded));
}

/// Reads per-item provenance from an upstream's response parameters, for `n` items. An
/// upstream that is not an idn node reports none; its items get `default`.
pub fn decode(parameters: &Parameters, n: usize, default: &Provenance) -> Vec<Provenance> {
    // A value is per item when it is an array of n elements; the path is itself an array, so
    // it is per item when its elements are arrays.
    let item = |key: &str, i: usize, per_item: &dyn Fn(&Value) -> bool| -> Option<&Value> {
        let value = parameters.get(key)?;
        match value.as_array() {
            Some(values) if values.len() == n && per_item(value) => values.get(i),
            _ => Some(value),
        }
    };
    let scalars = |v: &Value| v.as_array().is_some_and(|a| !a.iter().any(Value::is_array));
    let arrays = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_array));
    (0..n)
        .map(|i| Provenance {
            node: item(NODE, i, &scalars)
                .and_then(Value::as_str)
                .map_or_else(|| default.node.clone(), str::to_owned),
            model: item(MODEL, i, &scalars)
                .and_then(Value::as_str)
                .map_or_else(|| default.model.clone(), str::to_owned),
            decision: item(DECISION, i, &scalars)
                .and_then(Value::as_str)
                .and_then(Decision::parse)
                .unwrap_or(default.decision),
            confidence: item(CONFIDENCE, i, &scalars)
                .and_then(Value::as_f64)
                .unwrap_or(default.confidence),
            path: item(PATH, i, &arrays)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_else(|| default.path.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(node: &str, decision: Decision, confidence: f64, path: &[&str]) -> Provenance {
        Provenance {
            node: node.into(),
            model: format!("{node}-model"),
            decision,
            confidence,
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn uniform_items_encode_as_single_values() {
        let items = vec![item("edge", Decision::Served, 0.9, &["edge"]); 3];
        let mut parameters = Parameters::new();
        encode(&items, &mut parameters);
        assert_eq!(parameters[DECISION], "served");
        assert_eq!(parameters[PATH], json!(["edge"]));
        assert_eq!(parameters[HOPS], 0);
        assert_eq!(parameters[DEGRADED], false);
    }

    #[test]
    fn mixed_items_round_trip_per_item() {
        let items = vec![
            item("edge", Decision::Served, 0.99, &["edge"]),
            item("cloud", Decision::Forwarded, 0.7, &["edge", "cloud"]),
            item("edge", Decision::Fallback, 0.4, &["edge"]),
        ];
        let mut parameters = Parameters::new();
        encode(&items, &mut parameters);
        assert_eq!(parameters[HOPS], json!([0, 1, 0]));
        assert_eq!(parameters[DEGRADED], true);
        let default = item("?", Decision::Served, 0.0, &[]);
        assert_eq!(decode(&parameters, 3, &default), items);
    }

    #[test]
    fn a_plain_oip_upstream_gets_the_default() {
        let default = item("cloud", Decision::Served, 0.0, &["edge", "cloud"]);
        assert_eq!(
            decode(&Parameters::new(), 2, &default),
            vec![default.clone(), default]
        );
    }
}
