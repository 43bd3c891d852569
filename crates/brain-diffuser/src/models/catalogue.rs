//! The catalogue of torchvision metric networks the `metrics/` folder can hold ([`METRIC_NETWORKS`]):
//! file names, weights, download URLs, and which file each evaluation protocol uses.

use metrics::protocol::slots;
use metrics::{Protocol, TorchvisionNetwork};

/// One torchvision metric network file of the `metrics/` folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricNetworkFile {
    /// Name in reports, e.g. "EfficientNet-B1 V2".
    pub name: &'static str,
    /// The protocols that use this file.
    pub used_by: &'static str,
    /// The `metrics::protocol::slots` name the network fills.
    pub slot: &'static str,
    /// The network.
    pub network: TorchvisionNetwork,
    /// File name inside `metrics/` of a converted copy (safetensors). The download itself, under
    /// its own name ([`MetricNetworkFile::download_name`]), is read as it is.
    pub file: &'static str,
    /// The weights it must hold, as the protocols name them (e.g. `IMAGENET1K_V1`).
    pub weights: &'static str,
    /// Where the original checkpoint is downloaded from.
    pub url: &'static str,
    /// Size of the download as torchvision lists it, when known.
    pub size: Option<&'static str>,
}

impl MetricNetworkFile {
    /// The download's file name (the URL's last segment), under which `metrics/` may hold it as
    /// downloaded: any `torch.save` format, legacy pickles included.
    pub fn download_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }
}

/// The metric networks the models folder can hold. Both EfficientNet-B1 weight sets are listed:
/// Brain-Diffuser's protocol means `IMAGENET1K_V1`, MindEye's `IMAGENET1K_V2` (same slot).
pub const METRIC_NETWORKS: [MetricNetworkFile; 5] = [
    MetricNetworkFile {
        name: "AlexNet",
        used_by: "metric (both protocols)",
        slot: slots::ALEXNET,
        network: TorchvisionNetwork::AlexNet,
        file: "alexnet.safetensors",
        weights: "IMAGENET1K_V1",
        url: "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        size: Some("233 MB"),
    },
    MetricNetworkFile {
        name: "Inception v3",
        used_by: "metric (both protocols)",
        slot: slots::INCEPTION_V3,
        network: TorchvisionNetwork::InceptionV3,
        file: "inception_v3.safetensors",
        weights: "IMAGENET1K_V1",
        url: "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        size: Some("104 MB"),
    },
    MetricNetworkFile {
        name: "EfficientNet-B1 V1",
        used_by: "metric (brain-diffuser protocol)",
        slot: slots::EFFICIENTNET_B1,
        network: TorchvisionNetwork::EfficientNetB1,
        file: "efficientnet_b1_v1.safetensors",
        weights: "IMAGENET1K_V1",
        url: "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth",
        size: Some("30 MB"),
    },
    MetricNetworkFile {
        name: "EfficientNet-B1 V2",
        used_by: "metric (mindeye protocol)",
        slot: slots::EFFICIENTNET_B1,
        network: TorchvisionNetwork::EfficientNetB1,
        file: "efficientnet_b1_v2.safetensors",
        weights: "IMAGENET1K_V2",
        url: "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth",
        size: Some("30 MB"),
    },
    MetricNetworkFile {
        name: "SwAV ResNet-50",
        used_by: "metric (both protocols)",
        slot: slots::SWAV_RESNET50,
        network: TorchvisionNetwork::SwavResNet50,
        file: "swav.safetensors",
        weights: "swav_800ep_pretrain",
        url: "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
        size: None,
    },
];

/// The metric network files `protocol` uses, one per torchvision slot it scores with: for a slot
/// with several files (EfficientNet-B1), the one whose weights the protocol names.
pub fn metric_networks_for(protocol: &Protocol) -> Vec<MetricNetworkFile> {
    let mut out: Vec<MetricNetworkFile> = Vec::new();
    for file in METRIC_NETWORKS {
        if out.iter().any(|f| f.slot == file.slot) || !protocol.feature_metrics.iter().any(|m| m.extractor == file.slot)
        {
            continue;
        }
        let meant = protocol.weights.iter().find(|(slot, _)| slot == file.slot).map(|(_, w)| w.as_str());
        let candidates: Vec<MetricNetworkFile> =
            METRIC_NETWORKS.iter().copied().filter(|f| f.slot == file.slot).collect();
        let chosen = candidates.iter().find(|f| meant.is_some_and(|w| w.contains(f.weights))).unwrap_or(&file);
        out.push(*chosen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_gets_its_efficientnet_weights() {
        let files = |p: &Protocol| metric_networks_for(p).iter().map(|f| f.file).collect::<Vec<_>>();
        let bd = files(&Protocol::brain_diffuser());
        let me = files(&Protocol::mindeye());
        assert_eq!(
            bd,
            ["alexnet.safetensors", "inception_v3.safetensors", "efficientnet_b1_v1.safetensors", "swav.safetensors"]
        );
        assert_eq!(
            me,
            ["alexnet.safetensors", "inception_v3.safetensors", "efficientnet_b1_v2.safetensors", "swav.safetensors"]
        );
    }
}
