//! `deploy/kubernetes/`, checked without a cluster: every manifest against the
//! Kubernetes API schemas (`kubernetes-validate`, strict: an unknown or misspelt field
//! is an error), and, in the tests below, the invariants that tie the manifests to
//! the binaries and images, so the two cannot drift apart.

use std::path::PathBuf;

use xshell::{Shell, cmd};

use crate::project_root;

/// The validator, which ships the API's JSON schemas, and the API version checked.
const VALIDATOR: &str = "kubernetes-validate==1.37.0";
const KUBERNETES_VERSION: &str = "1.37.0";

/// Every manifest: the Kustomize base's resources and the optional ones.
fn manifests() -> anyhow::Result<Vec<PathBuf>> {
    let root = project_root().join("deploy/kubernetes");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("optional")] {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let is_manifest = path
                .extension()
                .is_some_and(|extension| extension == "yaml")
                && path
                    .file_name()
                    .is_some_and(|name| name != "kustomization.yaml");
            if is_manifest {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Validates every manifest against the API schemas, offline.
pub(crate) fn validate(sh: &Shell) -> anyhow::Result<()> {
    let venv = crate::python::venv(sh, "kubernetes-validate", &[VALIDATOR])?;
    let validator = venv.join("bin/kubernetes-validate");
    let files = manifests()?;
    anyhow::ensure!(!files.is_empty(), "no manifests in deploy/kubernetes");
    let count = files.len();
    cmd!(
        sh,
        "{validator} --strict --quiet --kubernetes-version {KUBERNETES_VERSION} {files...}"
    )
    .run()?;
    eprintln!(
        "xtask: {} Kubernetes manifests valid against the {KUBERNETES_VERSION} schemas",
        count
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    /// Settings that hold a secret: never a literal `value`, never an environment
    /// variable from a Secret (it would show in `/proc/*/environ` and `kubectl
    /// describe`), only `NAME_FILE` pointing into a mounted Secret.
    const SECRET_VARIABLES: [&str; 12] = [
        "LEARNING_DATABASE_URL",
        "LEARNING_DB_URL",
        "DATABASE_URL",
        "SESSION_DATABASE_URL",
        "BACKUP_DATABASE_URL",
        "KC_DB_URL",
        "KC_DB_PASSWORD",
        "RESTORE_DATABASE_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "BACKUP_AGE_RECIPIENTS",
    ];

    fn parse(path: &Path) -> Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    fn load(name: &str) -> Value {
        parse(&project_root().join("deploy/kubernetes").join(name))
    }

    fn all() -> Vec<(String, Value)> {
        manifests()
            .unwrap()
            .into_iter()
            .map(|path| (path.display().to_string(), parse(&path)))
            .collect()
    }

    /// The pod spec of a Deployment or a CronJob.
    fn pod_spec(resource: &Value) -> &Value {
        match resource["kind"].as_str() {
            Some("CronJob") => &resource["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => &resource["spec"]["template"]["spec"],
        }
    }

    fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
        container["env"]
            .as_array()?
            .iter()
            .find(|entry| entry["name"] == name)?["value"]
            .as_str()
    }

    /// The numeric `USER` of a Dockerfile.
    fn image_user(dockerfile: &str) -> u64 {
        let text = std::fs::read_to_string(project_root().join("deploy").join(dockerfile)).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("USER "))
            .and_then(|user| user.trim().parse().ok())
            .unwrap_or_else(|| panic!("{dockerfile} has a numeric USER"))
    }

    /// Non-root as the image's own user, read-only root, no privilege to gain, and a
    /// writable `/tmp` of its own (pgpass files, PDF pages).
    fn assert_locked_down(spec: &Value, dockerfile: &str) {
        let pod = &spec["securityContext"];
        assert_eq!(pod["runAsNonRoot"], true);
        assert_eq!(pod["runAsUser"].as_u64(), Some(image_user(dockerfile)));
        assert_eq!(pod["fsGroup"], pod["runAsUser"], "secret files readable");
        assert_eq!(spec["automountServiceAccountToken"], false);
        for container in spec["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true);
            assert_eq!(security["allowPrivilegeEscalation"], false);
            assert_eq!(security["capabilities"]["drop"][0], "ALL");
            assert!(
                container["resources"]["limits"]["memory"].is_string(),
                "a memory limit"
            );
        }
    }

    #[test]
    fn the_base_lists_every_manifest_outside_optional() {
        let kustomization = load("kustomization.yaml");
        let listed: BTreeSet<&str> = kustomization["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|resource| resource.as_str().unwrap())
            .collect();
        let present: BTreeSet<String> = manifests()
            .unwrap()
            .into_iter()
            .filter(|path| !path.parent().unwrap().ends_with("optional"))
            .map(|path| path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            listed,
            present.iter().map(String::as_str).collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn the_worker_returns_its_jobs_before_the_kill_and_probes_the_real_endpoints() {
        let deployment = load("learning-worker-deployment.yaml");
        let spec = pod_spec(&deployment);
        let container = &spec["containers"][0];
        let grace: f64 = env(container, "WORKER_SHUTDOWN_GRACE_SECONDS")
            .expect("the shutdown grace is set, not left to a default")
            .parse()
            .unwrap();
        let kill_after = spec["terminationGracePeriodSeconds"].as_f64().unwrap();
        assert!(
            kill_after >= grace + 10.0,
            "terminationGracePeriodSeconds {kill_after} leaves time to release after the {grace} s grace"
        );

        let health_addr = env(container, "WORKER_HEALTH_ADDR").unwrap();
        let port: u64 = health_addr.rsplit_once(':').unwrap().1.parse().unwrap();
        assert!(
            health_addr.starts_with("0.0.0.0:"),
            "reachable by the kubelet"
        );
        let ports = container["ports"].as_array().unwrap();
        assert_eq!(ports[0]["name"], "metrics");
        assert_eq!(ports[0]["containerPort"].as_u64(), Some(port));
        let health_source =
            std::fs::read_to_string(project_root().join("crates/worker-core/src/health.rs"))
                .unwrap();
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
            assert!(
                health_source.contains(&format!("\"{path}\"")),
                "the worker serves {path}"
            );
        }
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], port.to_string());
        assert_eq!(annotations["prometheus.io/path"], "/metrics");

        let service = load("learning-worker-service.yaml");
        assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(port));
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(&service["spec"]["selector"], labels);
        let budget = load("learning-worker-pdb.yaml");
        assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
        assert_eq!(
            deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            0
        );
        assert_locked_down(spec, "learning-worker.Dockerfile");
    }

    #[test]
    fn the_backup_runs_once_per_tick_never_two_at_a_time_onto_its_volume() {
        let cron_job = load("backup-cron-cronjob.yaml");
        assert_eq!(cron_job["spec"]["concurrencyPolicy"], "Forbid");
        let spec = pod_spec(&cron_job);
        assert_eq!(spec["restartPolicy"], "Never");
        let container = &spec["containers"][0];
        assert_eq!(container["args"], serde_json::json!(["once"]));
        let backup_dir = env(container, "BACKUP_DIR").unwrap();
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|mount| mount["mountPath"] == backup_dir)
            .expect("BACKUP_DIR is a mounted volume");
        let volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|volume| volume["name"] == mount["name"])
            .unwrap();
        let claim = load("backup-cron-pvc.yaml");
        assert_eq!(
            volume["persistentVolumeClaim"]["claimName"],
            claim["metadata"]["name"]
        );
        assert_locked_down(spec, "backup-cron.Dockerfile");
    }

    #[test]
    fn no_manifest_holds_a_credential_and_every_secret_is_a_mounted_file() {
        for (name, resource) in all() {
            assert_ne!(
                resource["kind"], "Secret",
                "{name}: Secrets are created apart"
            );
            let text = resource.to_string();
            assert!(
                !text.contains("secretKeyRef"),
                "{name}: secrets as files only"
            );
            assert!(!text.contains("secretRef"), "{name}: secrets as files only");
            assert!(!text.contains("PASSWORD\""), "{name}: no password variable");
            if !matches!(resource["kind"].as_str(), Some("Deployment" | "CronJob")) {
                continue;
            }
            let spec = pod_spec(&resource);
            for container in spec["containers"].as_array().unwrap() {
                for entry in container["env"].as_array().into_iter().flatten() {
                    let variable = entry["name"].as_str().unwrap();
                    assert!(
                        !SECRET_VARIABLES.contains(&variable),
                        "{name}: {variable} must be given as {variable}_FILE"
                    );
                    let value = entry["value"].as_str().unwrap_or_default();
                    assert!(
                        !(value.contains("://") && value.contains('@')),
                        "{name}: {variable} holds credentials"
                    );
                    if let Some(base) = variable.strip_suffix("_FILE") {
                        assert!(SECRET_VARIABLES.contains(&base), "{name}: {variable}");
                        let mounted_secret = container["volumeMounts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|mount| value.starts_with(mount["mountPath"].as_str().unwrap()))
                            .any(|mount| {
                                spec["volumes"].as_array().unwrap().iter().any(|volume| {
                                    volume["name"] == mount["name"] && volume["secret"].is_object()
                                })
                            });
                        assert!(mounted_secret, "{name}: {variable} is a mounted Secret");
                    }
                }
            }
        }
    }
}
