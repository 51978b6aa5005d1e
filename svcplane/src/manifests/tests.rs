use super::sidecar::{KCM_KUBECONFIG, SIDECAR_PATCH_MARKER};
use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn args(extra: &[&str]) -> ManifestArgs {
    let argv = [
        "svcplane",
        "manifests",
        "--service-cluster-ip-range=10.96.0.0/12",
    ];
    let cli = Cli::try_parse_from(argv.iter().chain(extra.iter())).unwrap();
    match cli.command {
        Command::Manifests(args) => args,
        _ => unreachable!(),
    }
}

#[test]
fn every_document_is_a_kubernetes_object() {
    let yaml = render(&args(&[])).unwrap();
    let kinds: Vec<String> = yaml
        .split("\n---\n")
        .skip(1)
        .map(|doc| {
            let value: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
            value["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "FlowSchema",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Service",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ]
    );
    assert!(yaml.contains("--service-cluster-ip-range=10.96.0.0/12"));
}

/// The documents of `yaml`, parsed.
fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    yaml.split("\n---\n")
        .skip(1)
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect()
}

fn document<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|doc| doc["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The users the match condition of the endpoint validation leaves out.
fn users_in_match_condition(docs: &[serde_yaml::Value]) -> Vec<String> {
    let hooks = &document(docs, "ValidatingWebhookConfiguration")["webhooks"];
    let condition = hooks[0]["matchConditions"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("not-an-endpoint-controller"))
        .unwrap()["expression"]
        .as_str()
        .unwrap()
        .to_string();
    let list = condition
        .strip_prefix("!(request.userInfo.username in [")
        .and_then(|rest| rest.strip_suffix("])"))
        .unwrap();
    list.split(", ")
        .map(|quoted| quoted.trim_matches('\'').to_string())
        .collect()
}

#[test]
fn the_process_trusts_exactly_the_writers_the_match_condition_leaves_out() {
    for extra in [
        &[][..],
        &["--namespace=platform", "--service-account=endpoints-guard"][..],
    ] {
        let docs = documents(&render(&args(extra)).unwrap());
        let container = &document(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
        let argv = std::iter::once("svcplane".to_string())
            .chain(strings(&container["args"]))
            .collect::<Vec<_>>();
        let Command::Run(run) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("the Deployment does not run `svcplane run`")
        };
        let trusted = run.webhook.trusted_endpoint_writers();
        assert_eq!(users_in_match_condition(&docs), trusted, "{extra:?}");
        let service_account = &document(&docs, "ServiceAccount")["metadata"];
        assert!(trusted.contains(&format!(
            "system:serviceaccount:{}:{}",
            service_account["namespace"].as_str().unwrap(),
            service_account["name"].as_str().unwrap()
        )));
    }
}

#[test]
fn only_svcplanes_namespace_is_exempt_and_no_label_can_exempt_another() {
    let yaml = render(&args(&["--namespace=platform"])).unwrap();
    assert!(!yaml.contains("svcplane.io/webhook"), "{yaml}");
    let docs = documents(&yaml);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for hook in document(&docs, kind)["webhooks"].as_sequence().unwrap() {
            let requirements = &hook["namespaceSelector"]["matchExpressions"];
            assert_eq!(requirements.as_sequence().unwrap().len(), 1);
            assert_eq!(
                requirements[0]["key"].as_str(),
                Some("kubernetes.io/metadata.name")
            );
            assert_eq!(requirements[0]["operator"].as_str(), Some("NotIn"));
            assert_eq!(strings(&requirements[0]["values"]), ["platform"]);
        }
    }
}

#[test]
fn leases_are_svcplanes_own_and_only_those_may_be_updated() {
    let docs = documents(&render(&args(&["--namespace=platform"])).unwrap());
    let role = document(&docs, "Role");
    assert_eq!(role["metadata"]["namespace"].as_str(), Some("platform"));
    let rules: Vec<(Vec<String>, Option<Vec<String>>)> = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| (strings(&r["verbs"]), r.get("resourceNames").map(strings)))
        .collect();
    assert_eq!(
        rules,
        [
            (vec!["create".to_string()], None),
            (
                vec!["get".to_string(), "update".to_string()],
                Some(vec![
                    "svcplane-controllers".to_string(),
                    "svcplane-webhook-releaser".to_string()
                ])
            ),
        ]
    );
    assert_eq!(
        document(&docs, "RoleBinding")["metadata"]["namespace"].as_str(),
        Some("platform")
    );
    let args = strings(
        &document(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    for flag in [
        "--leader-elect-resource-namespace=platform",
        "--leader-elect-resource-name=svcplane-controllers",
        "--releaser-lease=platform/svcplane-webhook-releaser",
    ] {
        assert!(args.contains(&flag.to_string()), "{flag} not in {args:?}");
    }
}

#[test]
fn the_deployment_is_locked_down_spread_and_budgeted() {
    let docs = documents(&render(&args(&[])).unwrap());
    let pod = &document(&docs, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["runAsUser"].as_i64(), Some(65532));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        security["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    let resources = &container["resources"];
    assert_eq!(resources["requests"]["cpu"].as_str(), Some("100m"));
    assert_eq!(resources["requests"]["memory"].as_str(), Some("128Mi"));
    assert_eq!(resources["limits"]["memory"].as_str(), Some("512Mi"));
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"].as_str(),
        Some("kubernetes.io/hostname")
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"]["topologyKey"]
            .as_str(),
        Some("kubernetes.io/hostname")
    );
    let budget = &document(&docs, "PodDisruptionBudget")["spec"];
    assert_eq!(budget["maxUnavailable"].as_i64(), Some(1));
    assert_eq!(
        budget["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
        Some("svcplane")
    );
    let policy = &document(&docs, "NetworkPolicy")["spec"];
    assert_eq!(strings(&policy["policyTypes"]), ["Ingress"]);
    let ports: Vec<i64> = policy["ingress"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [9443, 8080]);
    assert!(policy["ingress"][0].get("from").is_none());
}

#[test]
fn the_deployment_requires_known_callers_and_the_apiserver_side_is_printed() {
    let yaml = render(&args(&[])).unwrap();
    assert!(
        yaml.contains("--client-ca-file=/etc/svcplane/callers/ca.crt"),
        "{yaml}"
    );
    assert!(yaml.contains("name: svcplane-webhook-callers"), "{yaml}");

    let apiserver = render(&args(&["--admission-config"])).unwrap();
    let docs: Vec<serde_yaml::Value> = apiserver
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect();
    assert_eq!(docs[0]["kind"], "Config");
    assert_eq!(docs[0]["users"][0]["name"], "svcplane.svcplane-system.svc");
    assert_eq!(docs[1]["kind"], "AdmissionConfiguration");
    assert_eq!(
        docs[1]["plugins"][1]["configuration"]["kubeConfigFile"],
        "/etc/kubernetes/svcplane/webhook-client.kubeconfig"
    );
    let sidecar = render(&args(&[
        "--admission-config",
        "--webhook-url=https://127.0.0.1:9443",
    ]))
    .unwrap();
    assert!(sidecar.contains("127.0.0.1:9443"), "{sidecar}");
}

/// The Cluster/RoleBindings' subjects, as `kind/name`.
fn binding_subjects(docs: &[serde_yaml::Value]) -> Vec<Vec<String>> {
    docs.iter()
        .filter(|doc| doc["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
        .map(|doc| {
            doc["subjects"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|s| {
                    format!(
                        "{}/{}",
                        s["kind"].as_str().unwrap(),
                        s["name"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_sidecar_mode_leaves_the_deployment_out_and_binds_kube_controller_managers_user() {
    let service_mode = documents(&render(&args(&[])).unwrap());
    let sidecar_mode =
        documents(&render(&args(&["--webhook-url=https://127.0.0.1:9443"])).unwrap());
    let kinds = |docs: &[serde_yaml::Value]| {
        docs.iter()
            .map(|doc| doc["kind"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let left_out: Vec<String> = kinds(&service_mode)
        .into_iter()
        .filter(|kind| !kinds(&sidecar_mode).contains(kind))
        .collect();
    assert_eq!(
        left_out,
        [
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Service"
        ]
    );
    let account = "ServiceAccount/svcplane".to_string();
    let kcm = format!("User/{KCM_USER}");
    assert_eq!(
        binding_subjects(&service_mode),
        vec![vec![account.clone()]; 3]
    );
    assert_eq!(binding_subjects(&sidecar_mode), vec![vec![account, kcm]; 3]);
}

/// The patch after [`SIDECAR_PATCH_MARKER`], uncommented as a user would.
fn sidecar_patch_of(yaml: &str) -> serde_yaml::Value {
    let (_, patch) = yaml.split_once(SIDECAR_PATCH_MARKER).unwrap();
    let uncommented: String = patch
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .map(|line| format!("{line}\n"))
        .collect();
    serde_yaml::from_str(&uncommented).unwrap()
}

#[test]
fn the_sidecar_runs_with_the_callers_ca_and_kube_controller_managers_kubeconfig() {
    let sidecar = args(&["--webhook-url=https://127.0.0.1:9443"]);
    let yaml = render(&sidecar).unwrap();
    assert!(
        yaml.contains(&format!("#      {}\n", kcm_controllers_flag(&sidecar))),
        "{yaml}"
    );
    let patch = sidecar_patch_of(&yaml);
    let container = &patch["spec"]["containers"][0];
    assert_eq!(container["name"].as_str(), Some("svcplane"));
    let argv = std::iter::once("svcplane".to_string())
        .chain(strings(&container["args"]))
        .collect::<Vec<_>>();
    let Command::Run(run) = Cli::try_parse_from(&argv).unwrap().command else {
        panic!("the sidecar does not run `svcplane run`")
    };
    assert_eq!(run.webhook.address.to_string(), "127.0.0.1:9443");
    assert!(run.admin.admin_address.ip().is_loopback());
    assert!(
        run.webhook
            .trusted_endpoint_writers()
            .contains(&KCM_USER.to_string())
    );

    // Every file the flags name is under a mount of a host directory or file.
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["readOnly"].as_bool(), Some(true));
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let host_volumes: Vec<String> = patch["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| v["hostPath"]["path"].as_str().is_some())
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let files = [
        run.webhook.tls_cert_file.clone(),
        run.webhook.tls_private_key_file.clone(),
        run.webhook
            .client_ca_file
            .clone()
            .expect("--client-ca-file"),
        run.cluster.kubeconfig.clone().expect("--kubeconfig"),
    ];
    for file in files {
        let (volume, _) = mounts
            .iter()
            .find(|(_, path)| file.starts_with(path))
            .unwrap_or_else(|| panic!("{} is not mounted: {mounts:?}", file.display()));
        assert!(host_volumes.contains(volume), "{volume} is not a host path");
    }
    assert_eq!(
        run.cluster.kubeconfig.unwrap().display().to_string(),
        KCM_KUBECONFIG
    );

    // Root, to read kube-controller-manager's kubeconfig (0600), and nothing more.
    let security = &container["securityContext"];
    assert_eq!(security["runAsUser"].as_i64(), Some(0));
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        container["readinessProbe"]["httpGet"]["host"].as_str(),
        Some("127.0.0.1")
    );
}

#[test]
fn kube_controller_manager_keeps_the_controllers_kubeadm_adds() {
    let flag = kcm_controllers_flag(&args(&[]));
    let controllers: Vec<&str> = flag
        .strip_prefix("--controllers=")
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(
        controllers,
        [
            "*",
            "bootstrapsigner",
            "tokencleaner",
            "-endpoints-controller",
            "-endpointslice-controller",
            "-endpointslice-mirroring-controller"
        ]
    );
    let yaml = render(&args(&[])).unwrap();
    assert!(yaml.contains(&flag));
    assert!(
        !yaml.contains("- --controllers="),
        "svcplane runs its default"
    );
}

/// kube-controller-manager turns off exactly what svcplane runs; svcplane's container is
/// given the same list; RBAC follows.
#[test]
fn the_controllers_svcplane_runs_are_the_ones_kube_controller_manager_leaves() {
    let only_slices = args(&["--controllers=*,-endpoints-controller"]);
    assert_eq!(
        kcm_controllers_flag(&only_slices),
        "--controllers=*,bootstrapsigner,tokencleaner,-endpointslice-controller,-endpointslice-mirroring-controller"
    );
    let yaml = render(&only_slices).unwrap();
    let docs = documents(&yaml);
    let deployment = document(&docs, "Deployment");
    let container_args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        container_args.contains(&"--controllers=*,-endpoints-controller".to_string()),
        "{container_args:?}"
    );
    let role = docs
        .iter()
        .find(|d| {
            d["metadata"]["name"].as_str() == Some("svcplane-controllers")
                && d["kind"].as_str() == Some("ClusterRole")
        })
        .unwrap();
    let endpoints_rules: Vec<_> = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| strings(&r["resources"]).contains(&"endpoints".to_string()))
        .collect();
    assert_eq!(endpoints_rules.len(), 1);
    assert_eq!(
        strings(&endpoints_rules[0]["verbs"]),
        ["get", "list", "watch"]
    );

    let sidecar = render(&args(&[
        "--webhook-url=https://127.0.0.1:9443",
        "--controllers=endpointslice-mirroring-controller",
    ]))
    .unwrap();
    assert!(
        sidecar.contains(
            "--controllers=*,bootstrapsigner,tokencleaner,-endpointslice-mirroring-controller\n"
        ),
        "{sidecar}"
    );
    assert!(sidecar.contains("--controllers=endpointslice-mirroring-controller"));
}

#[test]
fn the_url_mode_registers_loopback() {
    let yaml = render(&args(&["--webhook-url=https://127.0.0.1:9443"])).unwrap();
    assert!(
        yaml.contains("url: https://127.0.0.1:9443/mutate/services"),
        "{yaml}"
    );
}

/// svcplane's ServiceAccount is routed to `workload-high`, ahead of the `service-accounts`
/// FlowSchema (9000) that sends every other ServiceAccount to `workload-low`.
#[test]
fn a_flow_schema_puts_svcplanes_account_ahead_of_tenants() {
    let docs = documents(&render(&args(&["--namespace=infra"])).unwrap());
    let schema = document(&docs, "FlowSchema");
    assert_eq!(schema["apiVersion"], "flowcontrol.apiserver.k8s.io/v1");
    let spec = &schema["spec"];
    assert_eq!(spec["priorityLevelConfiguration"]["name"], "workload-high");
    assert!(spec["matchingPrecedence"].as_i64().unwrap() < 9000);
    let subject = &spec["rules"][0]["subjects"][0];
    assert_eq!(subject["kind"], "ServiceAccount");
    assert_eq!(subject["serviceAccount"]["namespace"], "infra");
    assert_eq!(subject["serviceAccount"]["name"], "svcplane");
}
