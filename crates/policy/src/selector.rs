//! Label selectors (`metav1.LabelSelector`): `matchLabels` and `matchExpressions` with the
//! operators In, NotIn, Exists and DoesNotExist, all requirements ANDed. A selector without
//! requirements selects everything.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::{Error, Result};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The label is present and its value is one of these.
    In(BTreeSet<String>),
    /// The label is absent, or its value is none of these.
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

impl Selector {
    /// The empty selector: selects everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector `matchLabels: {k: v, ...}`.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let requirements = pairs
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.to_owned(),
                operator: Operator::In(BTreeSet::from([v.to_owned()])),
            })
            .collect();
        Self { requirements }
    }

    pub fn selects_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Converts a Kubernetes selector; `object` and `field` name it in errors.
    pub fn from_k8s(selector: &LabelSelector, object: &str, field: &str) -> Result<Self> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In(BTreeSet::from([value.clone()])),
            });
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let at = format!("{field}.matchExpressions[{i}]");
            if expr.key.is_empty() {
                return Err(Error::invalid(object, format!("{at}.key"), "is empty"));
            }
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let operator = match expr.operator.as_str() {
                "In" => Operator::In(values.clone()),
                "NotIn" => Operator::NotIn(values.clone()),
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(Error::invalid(
                        object,
                        format!("{at}.operator"),
                        format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                    ))
                }
            };
            let wants_values = matches!(operator, Operator::In(_) | Operator::NotIn(_));
            if wants_values && values.is_empty() {
                return Err(Error::invalid(
                    object,
                    format!("{at}.values"),
                    format!("must not be empty for {}", expr.operator),
                ));
            }
            if !wants_values && !values.is_empty() {
                return Err(Error::invalid(
                    object,
                    format!("{at}.values"),
                    format!("must be empty for {}", expr.operator),
                ));
            }
            requirements.push(Requirement {
                key: expr.key.clone(),
                operator,
            });
        }
        Ok(Self { requirements })
    }
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::In(set) => value.is_some_and(|v| set.contains(v)),
            Operator::NotIn(set) => value.is_none_or(|v| !set.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(exprs: Vec<LabelSelectorRequirement>) -> Selector {
        let ls = LabelSelector {
            match_expressions: Some(exprs),
            match_labels: None,
        };
        Selector::from_k8s(&ls, "test", "sel").unwrap()
    }

    #[test]
    fn empty_selector_selects_everything() {
        let s = Selector::from_k8s(&LabelSelector::default(), "t", "f").unwrap();
        assert!(s.selects_everything());
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_are_anded() {
        let s = Selector::labels([("app", "web"), ("tier", "front")]);
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "db"), ("tier", "front")])));
    }

    #[test]
    fn operators() {
        let in_ = selector(vec![expr("env", "In", &["prod", "staging"])]);
        assert!(in_.matches(&labels(&[("env", "prod")])));
        assert!(!in_.matches(&labels(&[("env", "dev")])));
        assert!(!in_.matches(&labels(&[])));

        let not_in = selector(vec![expr("env", "NotIn", &["prod"])]);
        assert!(not_in.matches(&labels(&[("env", "dev")])));
        assert!(not_in.matches(&labels(&[])), "NotIn matches an absent key");
        assert!(!not_in.matches(&labels(&[("env", "prod")])));

        let exists = selector(vec![expr("env", "Exists", &[])]);
        assert!(exists.matches(&labels(&[("env", "")])));
        assert!(!exists.matches(&labels(&[("other", "x")])));

        let absent = selector(vec![expr("env", "DoesNotExist", &[])]);
        assert!(absent.matches(&labels(&[("other", "x")])));
        assert!(!absent.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn match_labels_and_expressions_combine() {
        let ls = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![expr("env", "NotIn", &["prod"])]),
        };
        let s = Selector::from_k8s(&ls, "t", "f").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "db")])));
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        let bad = |e| {
            let ls = LabelSelector {
                match_expressions: Some(vec![e]),
                match_labels: None,
            };
            Selector::from_k8s(&ls, "NetworkPolicy a/b", "spec.podSelector")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(expr("k", "Equals", &["v"])),
            "NetworkPolicy a/b: spec.podSelector.matchExpressions[0].operator: \
             \"Equals\" is not one of In, NotIn, Exists, DoesNotExist"
        );
        assert!(bad(expr("k", "In", &[])).contains("matchExpressions[0].values: must not be empty"));
        assert!(bad(expr("k", "Exists", &["v"])).contains("values: must be empty"));
    }
}
