//! A target's answer in its service's classes: which column is which class is resolved once at
//! start from class names, and each answer is moved into the service's columns with it.

use super::Answer;
use super::answer::renormalise;
use crate::error::RequestError;

/// Where a target's columns go among its service's classes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Columns {
    /// Column j is the service's class j: the target names the service's classes in its
    /// order, or nothing names them. `Some(n)`: its classes are named, so it answers n columns.
    Same(Option<usize>),
    /// The target names other classes, or the service's in another order.
    Named(Named),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Named {
    /// The service's class of each of the target's columns; None: a class the service lacks.
    to: Vec<Option<usize>>,
    /// How many classes the service has.
    classes: usize,
    /// The service's classes the target knows; None when it knows every one.
    known: Option<Vec<bool>>,
}

impl Columns {
    /// The columns of a target whose classes are `target` for a service whose classes are
    /// `service` (None: not named).
    pub(crate) fn resolve(service: Option<&[String]>, target: Option<&[String]>) -> Columns {
        match (service, target) {
            (Some(service), Some(target)) if service != target => {
                let to: Vec<Option<usize>> = target
                    .iter()
                    .map(|class| service.iter().position(|c| c == class))
                    .collect();
                let mut known = vec![false; service.len()];
                to.iter().flatten().for_each(|&j| known[j] = true);
                Columns::Named(Named {
                    to,
                    classes: service.len(),
                    known: Some(known).filter(|k| !k.iter().all(|&k| k)),
                })
            }
            (service, target) => Columns::Same(target.or(service).map(<[String]>::len)),
        }
    }

    /// The service's classes the target knows; None when it knows every one.
    pub(crate) fn known(&self) -> Option<&[bool]> {
        match self {
            Columns::Named(named) => named.known.as_deref(),
            Columns::Same(_) => None,
        }
    }

    /// `answer`, from the target called `name`, in the service's classes: each column moved to
    /// its class, 0 for the classes the target does not know, and each row renormalised when
    /// columns of classes the service lacks were dropped. An answer with another number of
    /// columns than the target's named classes does not fit.
    pub(crate) fn map(&self, name: &str, answer: Answer) -> Result<Answer, RequestError> {
        let expected = match self {
            Columns::Same(columns) => *columns,
            Columns::Named(named) => Some(named.to.len()),
        };
        if let Some(expected) = expected.filter(|&n| n != answer.classes) {
            return Err(RequestError::Mismatch(format!(
                "{name} answered {} classes, {expected} are named for it",
                answer.classes
            )));
        }
        let Columns::Named(named) = self else {
            return Ok(answer);
        };
        let c = named.classes;
        let drops = named.to.contains(&None);
        let mut probs = vec![0.0; answer.items.len() * c];
        for (row, out) in answer
            .probs
            .chunks_exact(named.to.len())
            .zip(probs.chunks_exact_mut(c))
        {
            for (&p, to) in row.iter().zip(&named.to) {
                if let Some(j) = *to {
                    out[j] = p;
                }
            }
            if drops {
                renormalise(out);
            }
        }
        Ok(Answer {
            classes: c,
            probs,
            items: answer.items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::close;
    use super::*;
    use crate::wire::provenance::Provenance;
    use idn_contract::provenance::Decision;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn answer(classes: usize, probs: &[f32]) -> Answer {
        let item = Provenance {
            node: "edge".into(),
            model: "m".into(),
            decision: Decision::Served,
            confidence: 0.5,
            path: vec![],
        };
        Answer {
            classes,
            probs: probs.to_vec(),
            items: vec![item; probs.len() / classes],
        }
    }

    #[test]
    fn the_same_classes_or_no_names_keep_the_columns() {
        let abc = names(&["a", "b", "c"]);
        assert_eq!(
            Columns::resolve(Some(&abc), Some(&abc)),
            Columns::Same(Some(3))
        );
        assert_eq!(Columns::resolve(Some(&abc), None), Columns::Same(Some(3)));
        assert_eq!(Columns::resolve(None, None), Columns::Same(None));
        let answer = answer(2, &[0.3, 0.7]);
        assert_eq!(Columns::Same(None).map("m", answer.clone()), Ok(answer));
    }

    #[test]
    fn columns_move_to_their_class_by_name() {
        let service = names(&["a", "b", "c"]);
        let reversed = Columns::resolve(Some(&service), Some(&names(&["c", "b", "a"])));
        assert_eq!(reversed.known(), None, "knows every class");
        let mapped = reversed
            .map("m", answer(3, &[0.5, 0.3, 0.2, 0.0, 0.1, 0.9]))
            .unwrap();
        assert_eq!(mapped.probs, [0.2, 0.3, 0.5, 0.9, 0.1, 0.0]);
        assert_eq!(mapped.items.len(), 2);

        let partial = Columns::resolve(Some(&service), Some(&names(&["b", "a"])));
        assert_eq!(partial.known(), Some(&[true, true, false][..]));
        let mapped = partial.map("m", answer(2, &[0.25, 0.75])).unwrap();
        assert_eq!(mapped.probs, [0.75, 0.25, 0.0]);
    }

    #[test]
    fn columns_of_classes_the_service_lacks_are_dropped_and_rows_renormalised() {
        let service = names(&["a", "b"]);
        let columns = Columns::resolve(Some(&service), Some(&names(&["b", "z", "a"])));
        let mapped = columns.map("m", answer(3, &[0.3, 0.5, 0.2])).unwrap();
        assert_eq!(mapped.classes, 2);
        assert!(close(&mapped.probs, &[0.4, 0.6]), "{:?}", mapped.probs);
    }

    #[test]
    fn an_answer_with_other_columns_than_its_names_does_not_fit() {
        let service = names(&["a", "b"]);
        let columns = Columns::resolve(Some(&service), Some(&names(&["b", "a"])));
        assert_eq!(
            columns.map("cloud", answer(3, &[0.2, 0.3, 0.5])),
            Err(RequestError::Mismatch(
                "cloud answered 3 classes, 2 are named for it".into()
            ))
        );
        let same = Columns::resolve(Some(&service), None);
        assert!(same.map("cloud", answer(3, &[0.2, 0.3, 0.5])).is_err());
    }
}
