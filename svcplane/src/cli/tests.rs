use super::*;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("svcplane").chain(args.iter().copied()))
}

#[test]
fn the_cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn run_takes_the_control_plane_flag_names() {
    let cli = parse(&[
        "run",
        "--service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/108",
        "--service-node-port-range=30000+2767",
        "--tls-cert-file=/certs/tls.crt",
        "--tls-private-key-file=/certs/tls.key",
        "--concurrent-service-endpoint-syncs=10",
        "--max-endpoints-per-slice=500",
        "--mirroring-concurrent-service-endpoint-syncs=3",
        "--mirroring-endpointslice-updates-batch-period=1s",
        "--leader-elect=false",
        "--kube-api-qps=20",
        "--repair-interval=30s",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.ranges.service_cluster_ip_range.0.len(), 2);
    assert_eq!(run.ranges.service_node_port_range.last(), 32767);
    assert_eq!(run.controllers.concurrent_service_endpoint_syncs, 10);
    assert_eq!(run.controllers.concurrent_endpoint_syncs, 5);
    assert_eq!(run.controllers.max_endpoints_per_slice, 500);
    assert_eq!(
        run.controllers.mirroring_concurrent_service_endpoint_syncs,
        3
    );
    assert_eq!(
        run.controllers.mirroring_endpointslice_updates_batch_period,
        Duration::from_secs(1)
    );
    assert!(!run.controllers.leader_elect);
    assert_eq!(
        (run.controllers.kube_api_qps, run.controllers.kube_api_burst),
        (20.0, 30)
    );
    assert_eq!(run.webhook.repair_interval, Duration::from_secs(30));
    assert_eq!(
        run.webhook.trusted_endpoint_writers(),
        webhook::manifests::trusted_endpoint_writers("svcplane-system", "svcplane")
    );
}

#[test]
fn the_default_trusted_writers_follow_svcplanes_identity() {
    let webhook = |extra: &[&str]| {
        let mut args = vec![
            "webhook",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--tls-cert-file=a",
            "--tls-private-key-file=b",
        ];
        args.extend_from_slice(extra);
        match parse(&args).unwrap().command {
            Command::Webhook(webhook) => webhook.webhook.trusted_endpoint_writers(),
            _ => unreachable!(),
        }
    };
    assert_eq!(
        webhook(&["--namespace=infra", "--service-account=svcplane-webhook"]).last(),
        Some(&"system:serviceaccount:infra:svcplane-webhook".to_string())
    );
    assert_eq!(
        webhook(&["--trusted-endpoint-writers=alice,bob"]),
        ["alice", "bob"]
    );
}

#[test]
fn client_certificates_and_limits_are_flags() {
    let cli = parse(&[
        "webhook",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--tls-cert-file=a",
        "--tls-private-key-file=b",
        "--client-ca-file=/etc/svcplane/callers/ca.crt",
        "--client-cert-allowed-names=kube-apiserver,apiserver.example",
        "--max-connections=10",
        "--request-timeout=2s",
    ])
    .unwrap();
    let Command::Webhook(webhook) = cli.command else {
        panic!("not webhook")
    };
    assert_eq!(
        webhook.webhook.client_cert_allowed_names,
        ["kube-apiserver", "apiserver.example"]
    );
    let limits = webhook.limits.limits();
    assert_eq!(
        webhook::server::ServerLimits {
            max_connections: 1024,
            request_timeout: Duration::from_secs(4),
            ..limits
        },
        webhook::server::ServerLimits::default(),
        "the flags' defaults are the library's"
    );
    assert_eq!(limits.max_connections, 10);
    assert_eq!(limits.request_timeout, Duration::from_secs(2));
    assert_eq!(limits.tls_handshake_timeout, Duration::from_secs(10));
    let error = parse(&[
        "webhook",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--tls-cert-file=a",
        "--tls-private-key-file=b",
        "--client-cert-allowed-names=kube-apiserver",
    ])
    .unwrap_err();
    assert!(error.to_string().contains("--client-ca-file"), "{error}");
}

#[test]
fn bad_values_are_explained() {
    let error = parse(&[
        "webhook",
        "--service-cluster-ip-range=10.96.0.0/12,10.112.0.0/12",
        "--tls-cert-file=a",
        "--tls-private-key-file=b",
    ])
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("two CIDRs must be of different families"),
        "{error}"
    );
    let error = parse(&["controllers", "--max-endpoints-per-slice=1001"]).unwrap_err();
    assert!(error.to_string().contains("1001"), "{error}");
    let error = parse(&[
        "webhook",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--service-node-port-range=32767-30000",
        "--tls-cert-file=a",
        "--tls-private-key-file=b",
    ])
    .unwrap_err();
    assert!(
        error.to_string().contains("--service-node-port-range"),
        "{error}"
    );
}

/// `--controllers` takes kube-controller-manager's value as it is (the rules are
/// `controllers::runtime::enabled`'s, tested there).
#[test]
fn controllers_takes_kube_controller_managers_list() {
    let enabled = |args: &[&str]| match parse(args) {
        Ok(Cli {
            command: Command::Controllers(controllers),
            ..
        }) => Ok(controllers.controllers.selection.controllers.enabled()),
        Ok(_) => unreachable!(),
        Err(error) => Err(error.to_string()),
    };
    let all = enabled(&["controllers"]).unwrap();
    assert!(all.endpoints && all.endpointslice && all.mirroring);
    let slices = enabled(&["controllers", "--controllers=*,-endpoints-controller"]).unwrap();
    assert!(!slices.endpoints && slices.endpointslice && slices.mirroring);
    let mirroring = enabled(&[
        "controllers",
        "--controllers",
        "-endpoints-controller,endpointslice-mirroring-controller,bootstrapsigner",
    ])
    .unwrap();
    assert!(!mirroring.endpoints && !mirroring.endpointslice && mirroring.mirroring);
    assert!(enabled(&["controllers", "--controllers="]).unwrap().none());
    let error = enabled(&["controllers", "--controllers=*,-endpointslices"]).unwrap_err();
    assert!(
        error.contains("\"endpointslices\" is not in the list of known controllers"),
        "{error}"
    );
}

#[test]
fn an_empty_allow_list_parses_as_empty() {
    assert_eq!(CidrList::from_str("").unwrap(), CidrList(vec![]));
    assert_eq!(
        CidrList::from_str("203.0.113.0/24, 10.0.0.0/8")
            .unwrap()
            .0
            .len(),
        2
    );
}
