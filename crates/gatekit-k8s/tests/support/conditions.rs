//! Conditions as comparable tuples, for the status tests that assert them field by
//! field.

use gatekit_k8s::status::Condition;

/// (type, status, reason, message, observedGeneration) of a condition.
pub(crate) type Cond = (String, &'static str, String, String, Option<i64>);

/// Every condition of `cs`, in order.
pub(crate) fn conds(cs: &[Condition]) -> Vec<Cond> {
    cs.iter()
        .map(|c| {
            (
                c.type_().to_owned(),
                c.status().as_str(),
                c.reason().to_owned(),
                c.message().to_owned(),
                c.observed_generation(),
            )
        })
        .collect()
}

/// The condition expected: `True` when `ok`.
pub(crate) fn c(type_: &str, ok: bool, reason: &str, message: &str, generation: i64) -> Cond {
    (
        type_.to_owned(),
        if ok { "True" } else { "False" },
        reason.to_owned(),
        message.to_owned(),
        Some(generation),
    )
}
