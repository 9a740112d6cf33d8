//! `gatekit validate`: load and translate manifests without serving them, and say what
//! is wrong in words a person can act on.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use gatekit_core::{Backend, RouteTable};
use gatekit_k8s::status::{Condition, ConditionStatus};
use gatekit_k8s::{ResourceSet, Sources, TranslateOptions, translate};

/// Checks the manifests under `dirs` and writes a report to `out`: load errors (file,
/// document, resource, field, reason), then every resource with its conditions (and
/// those towards each parent Gateway and of each listener), then the problems that keep
/// routes or listeners from being served. Returns whether everything is valid: nothing
/// failed to load, every `Accepted` and `ResolvedRefs` condition is `True`, and every
/// route compiles.
pub fn validate(dirs: &[PathBuf], options: &TranslateOptions, out: &mut dyn Write) -> bool {
    // Output errors (a closed pipe) do not change the verdict.
    match report(dirs, options, out) {
        Ok(ok) => ok,
        Err(error) => {
            tracing::debug!(%error, "writing the report");
            false
        }
    }
}

fn is_bad(c: &Condition) -> bool {
    matches!(c.type_(), "Accepted" | "ResolvedRefs") && c.status() != ConditionStatus::True
}

fn table_errors(translation: &gatekit_k8s::Translation) -> Vec<String> {
    let none = |_: &str| -> Option<Backend> { None };
    let mut errors = BTreeSet::new();
    for port in translation.listeners() {
        let (_, errs) =
            RouteTable::build_partial(port.routes().iter().map(|r| (**r).clone()).collect(), &none);
        errors.extend(errs.iter().map(ToString::to_string));
    }
    errors.into_iter().collect()
}

/// A translation error with the file and document of its route in front, when known:
/// `routes.yaml (document 2): route app/r: spec.rules[0].backendRefs[0]: reason`.
fn located(error: &gatekit_core::ConfigError, sources: &Sources) -> String {
    let source = error.route().and_then(|r| {
        ["HTTPRoute", "GRPCRoute"]
            .into_iter()
            .find_map(|kind| sources.of(kind, Some(r.namespace()), r.name()))
    });
    match source {
        Some((file, document)) => format!("{file} (document {document}): {error}"),
        None => error.to_string(),
    }
}

/// Writes the report; returns the verdict.
fn report(
    dirs: &[PathBuf],
    options: &TranslateOptions,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let (resources, sources) = match ResourceSet::from_dirs_with_sources(dirs) {
        Ok((resources, warnings, sources)) => {
            for warning in warnings {
                writeln!(out, "skipped: {warning}")?;
            }
            (resources, sources)
        }
        Err(errors) => {
            writeln!(
                out,
                "{} manifest error(s); nothing was translated:",
                errors.len()
            )?;
            for error in errors {
                writeln!(out, "  error: {error}")?;
            }
            return Ok(false);
        }
    };
    for gw in &resources.gateways {
        if gw.spec.gateway_class_name != options.served_class() {
            writeln!(
                out,
                "skipped: Gateway {}/{}: gatewayClassName {} is not {} (the class served; set gatewayClassName in the settings given with --config)",
                gw.metadata.namespace.as_deref().unwrap_or("default"),
                gw.metadata.name.as_deref().unwrap_or(""),
                gw.spec.gateway_class_name,
                options.served_class(),
            )?;
        }
    }
    let translation = translate(&resources, options);
    let mut conditions_ok = true;
    for status in translation.statuses() {
        let bad = status.conditions().iter().any(is_bad)
            || status
                .parents()
                .iter()
                .any(|p| p.conditions().iter().any(is_bad))
            || status
                .listeners()
                .iter()
                .any(|l| l.conditions().iter().any(is_bad));
        conditions_ok &= !bad;
        writeln!(out, "{} {}", if bad { "✗" } else { "✓" }, status.resource())?;
        for c in status.conditions() {
            writeln!(out, "    {c}")?;
        }
        if let Some(n) = status.attached_listener_sets() {
            writeln!(out, "    attachedListenerSets: {n}")?;
        }
        for parent in status.parents() {
            let p = parent.parent();
            let section = p
                .section_name
                .as_deref()
                .map(|s| format!(" sectionName={s}"))
                .unwrap_or_default();
            writeln!(
                out,
                "    parent {} {}/{}{section}:",
                p.kind, p.namespace, p.name
            )?;
            for c in parent.conditions() {
                writeln!(out, "      {c}")?;
            }
        }
        for listener in status.listeners() {
            writeln!(
                out,
                "    listener {} ({} routes attached):",
                listener.name(),
                listener.attached_routes()
            )?;
            for c in listener.conditions() {
                writeln!(out, "      {c}")?;
            }
        }
    }
    let mut problems: Vec<String> = translation
        .errors()
        .iter()
        .map(|e| located(e, &sources))
        .collect();
    problems.extend(table_errors(&translation));
    if !problems.is_empty() {
        writeln!(out, "{} problem(s):", problems.len())?;
        for p in &problems {
            writeln!(out, "  error: {p}")?;
        }
    }
    let ok = conditions_ok && problems.is_empty();
    writeln!(
        out,
        "{}",
        if ok {
            "valid: every resource is Accepted and ResolvedRefs"
        } else {
            "invalid: see the ✗ resources and errors above"
        }
    )?;
    Ok(ok)
}
