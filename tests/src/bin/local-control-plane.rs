//! Runs a local control plane (etcd + kube-apiserver, and kube-controller-manager with the
//! in-tree endpoint controllers unless `--without-in-tree-endpoint-controllers`) until
//! Ctrl-C, and prints how to point kubectl at it.

use anyhow::Result;
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,e2e=info,kube_client::client::builder=off".into()),
        )
        .init();
    let in_tree = !std::env::args().any(|a| a == "--without-in-tree-endpoint-controllers");

    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    if in_tree {
        plane.start_controller_manager(ENDPOINT_CONTROLLERS)?;
    }
    let kubeconfig = plane.kubeconfig().display();
    let kubectl = plane.bins().kubectl.display();
    println!("Local control plane ready at {}", plane.url());
    println!(
        "  kube-controller-manager: {}",
        if in_tree {
            ENDPOINT_CONTROLLERS
        } else {
            "not running"
        }
    );
    println!("  logs and certificates:   {}", plane.dir().display());
    println!();
    println!("Point kubectl at it from another terminal:");
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  {kubectl} get services,endpoints,endpointslices -A");
    println!();
    println!("Ctrl-C stops everything and removes its files.");

    tokio::signal::ctrl_c().await?;
    println!("stopping");
    drop(plane);
    Ok(())
}
