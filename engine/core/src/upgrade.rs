//! Manifest format versions: old manifests are upgraded, step by step, before validation.

use serde_json::Value;

use crate::manifest::MANIFEST_VERSION;

/// One upgrade step: turns a manifest of version `from` into version `from + 1`.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The version this step upgrades from.
    pub from: u32,
    /// Rewrites the manifest in place.
    pub apply: fn(&mut Value),
}

/// The upgrade steps of the manifest format, oldest first. Version 1 is the first
/// released format, so there is nothing to upgrade yet; a step is added here,
/// never changed, whenever `MANIFEST_VERSION` is bumped.
pub const STEPS: &[Step] = &[];

/// Why a manifest's version cannot be brought to the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionError {
    /// The `version` key is absent.
    Missing,
    /// `version` is not a positive integer.
    NotAnInteger,
    /// The manifest was written for a newer engine.
    TooNew(u64),
    /// No upgrade path leads from this version.
    Unknown(u64),
}

impl VersionError {
    /// A message and a hint for the user.
    pub fn explain(&self, current: u32) -> (String, String) {
        match self {
            VersionError::Missing => (
                "the manifest has no `version`".into(),
                format!("add `version: {current}` as its first line"),
            ),
            VersionError::NotAnInteger => (
                "`version` must be a whole number".into(),
                format!("write `version: {current}`"),
            ),
            VersionError::TooNew(v) => (
                format!(
                    "the manifest is version {v}, newer than this engine understands (up to {current})"
                ),
                "upgrade the engine".into(),
            ),
            VersionError::Unknown(v) => (
                format!("there is no manifest format version {v}"),
                format!("the current version is {current}"),
            ),
        }
    }
}

/// Upgrades `manifest` to the current format version.
pub fn upgrade(manifest: &mut Value) -> Result<u32, VersionError> {
    upgrade_with(manifest, STEPS, MANIFEST_VERSION)
}

/// Upgrades `manifest` to `current` with the given steps; returns the version it started at.
pub fn upgrade_with(
    manifest: &mut Value,
    steps: &[Step],
    current: u32,
) -> Result<u32, VersionError> {
    let version = match manifest.get("version") {
        None => return Err(VersionError::Missing),
        Some(v) => v.as_u64().ok_or(VersionError::NotAnInteger)?,
    };
    if version > u64::from(current) {
        return Err(VersionError::TooNew(version));
    }
    let first = steps.first().map_or(current, |s| s.from);
    if version < u64::from(first) {
        return Err(VersionError::Unknown(version));
    }
    // Checked above: version <= current, which is a u32.
    let started = u32::try_from(version).map_err(|_| VersionError::TooNew(version))?;
    let mut at = started;
    while at < current {
        let step = steps
            .iter()
            .find(|s| s.from == at)
            .ok_or(VersionError::Unknown(u64::from(at)))?;
        (step.apply)(manifest);
        at += 1;
        if let Some(obj) = manifest.as_object_mut() {
            obj.insert("version".into(), Value::from(at));
        }
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rename_steps_to_stages(v: &mut Value) {
        if let Some(obj) = v.as_object_mut()
            && let Some(s) = obj.remove("steps")
        {
            obj.insert("stages".into(), s);
        }
    }

    fn add_seed(v: &mut Value) {
        if let Some(obj) = v.as_object_mut() {
            obj.entry("seed").or_insert(json!(7));
        }
    }

    const TEST_STEPS: &[Step] = &[
        Step {
            from: 1,
            apply: rename_steps_to_stages,
        },
        Step {
            from: 2,
            apply: add_seed,
        },
    ];

    #[test]
    fn upgrades_through_every_step_in_order() {
        let mut m = json!({"version": 1, "steps": {"a": {}}});
        assert_eq!(upgrade_with(&mut m, TEST_STEPS, 3), Ok(1));
        assert_eq!(m, json!({"version": 3, "stages": {"a": {}}, "seed": 7}));
    }

    #[test]
    fn current_version_is_left_alone() {
        let mut m = json!({"version": 1, "stages": {}});
        let before = m.clone();
        assert_eq!(upgrade(&mut m), Ok(1));
        assert_eq!(m, before);
    }

    #[test]
    fn refuses_missing_newer_and_unknown_versions() {
        assert_eq!(upgrade(&mut json!({})), Err(VersionError::Missing));
        assert_eq!(
            upgrade(&mut json!({"version": "one"})),
            Err(VersionError::NotAnInteger)
        );
        assert_eq!(
            upgrade(&mut json!({"version": 2})),
            Err(VersionError::TooNew(2))
        );
        assert_eq!(
            upgrade(&mut json!({"version": 0})),
            Err(VersionError::Unknown(0))
        );
        assert_eq!(
            upgrade_with(&mut json!({"version": 0}), TEST_STEPS, 3),
            Err(VersionError::Unknown(0))
        );
    }
}
