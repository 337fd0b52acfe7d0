//! The annotation and label keys, with Spiderpool's spellings.

/// Pod: pools for one interface.
pub const ANNO_IPPOOL: &str = "ipam.spidernet.io/ippool";
/// Pod: pools per interface; wins over [`ANNO_IPPOOL`].
pub const ANNO_IPPOOLS: &str = "ipam.spidernet.io/ippools";
/// Pod: SpiderSubnet for one interface (an automatic pool is made for the application).
pub const ANNO_SUBNET: &str = "ipam.spidernet.io/subnet";
/// Pod: SpiderSubnets per interface; wins over [`ANNO_SUBNET`].
pub const ANNO_SUBNETS: &str = "ipam.spidernet.io/subnets";
/// Pod: size of the automatic pool (`N` fixed, `+N` replicas plus N; default `+1`).
pub const ANNO_IPPOOL_IP_NUMBER: &str = "ipam.spidernet.io/ippool-ip-number";
/// Pod: delete the automatic pool with its application (default `true`). Also a pool label.
pub const ANNO_IPPOOL_RECLAIM: &str = "ipam.spidernet.io/ippool-reclaim";
/// Pod: extra routes.
pub const ANNO_ROUTES: &str = "ipam.spidernet.io/routes";
/// Namespace: default IPv4 pools.
pub const ANNO_NS_DEFAULT_IPV4_IPPOOL: &str = "ipam.spidernet.io/default-ipv4-ippool";
/// Namespace: default IPv6 pools.
pub const ANNO_NS_DEFAULT_IPV6_IPPOOL: &str = "ipam.spidernet.io/default-ipv6-ippool";
/// Namespace, older spelling of [`ANNO_NS_DEFAULT_IPV4_IPPOOL`].
pub const ANNO_NS_DEFAULT_V4_IPPOOL_OLD: &str = "ipam.spidernet.io/defaultv4ippool";
/// Namespace, older spelling of [`ANNO_NS_DEFAULT_IPV6_IPPOOL`].
pub const ANNO_NS_DEFAULT_V6_IPPOOL_OLD: &str = "ipam.spidernet.io/defaultv6ippool";
/// Short alias of [`ANNO_NS_DEFAULT_IPV4_IPPOOL`].
pub const ANNO_NS_DEFAULT_IPV4: &str = ANNO_NS_DEFAULT_IPV4_IPPOOL;
/// Short alias of [`ANNO_NS_DEFAULT_IPV6_IPPOOL`].
pub const ANNO_NS_DEFAULT_IPV6: &str = ANNO_NS_DEFAULT_IPV6_IPPOOL;
/// Short alias of [`ANNO_NS_DEFAULT_V4_IPPOOL_OLD`].
pub const ANNO_NS_DEFAULT_IPV4_OLD: &str = ANNO_NS_DEFAULT_V4_IPPOOL_OLD;
/// Short alias of [`ANNO_NS_DEFAULT_V6_IPPOOL_OLD`].
pub const ANNO_NS_DEFAULT_IPV6_OLD: &str = ANNO_NS_DEFAULT_V6_IPPOOL_OLD;
/// Multus: additional networks of a Pod.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// Multus: replaces the cluster default network of a Pod.
pub const MULTUS_DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";
/// Multus: status written after the networks are set up (read-only for the IPAM).
pub const MULTUS_NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Alias of [`MULTUS_NETWORKS`].
pub const ANNO_MULTUS_NETWORKS: &str = MULTUS_NETWORKS;
/// Alias of [`MULTUS_DEFAULT_NETWORK`].
pub const ANNO_MULTUS_DEFAULT_NETWORK: &str = MULTUS_DEFAULT_NETWORK;
/// Pod (Spiderpool coordinator): which interface carries the default route.
pub const ANNO_DEFAULT_ROUTE_NIC: &str = "ipam.spidernet.io/default-route-nic";
/// Pod: DNS settings (declared by Spiderpool, not used for pool selection).
pub const ANNO_DNS: &str = "ipam.spidernet.io/dns";

/// Labels Spiderpool puts on automatic pools made from a SpiderSubnet; the pool of an
/// application is found by these labels.
pub const LABEL_OWNER_SPIDER_SUBNET: &str = "ipam.spidernet.io/owner-spider-subnet";
pub const LABEL_OWNER_APPLICATION_GV: &str = "ipam.spidernet.io/owner-application-gv";
pub const LABEL_OWNER_APPLICATION_KIND: &str = "ipam.spidernet.io/owner-application-kind";
pub const LABEL_OWNER_APPLICATION_NAMESPACE: &str = "ipam.spidernet.io/owner-application-namespace";
pub const LABEL_OWNER_APPLICATION_NAME: &str = "ipam.spidernet.io/owner-application-name";
pub const LABEL_OWNER_APPLICATION_UID: &str = "ipam.spidernet.io/owner-application-uid";
/// Interface an automatic pool serves.
pub const LABEL_IPPOOL_INTERFACE: &str = "ipam.spidernet.io/interface";
/// IP version of an automatic pool: `IPv4` or `IPv6`.
pub const LABEL_IPPOOL_IP_VERSION: &str = "ipam.spidernet.io/ip-version";
pub const LABEL_IPPOOL_CIDR: &str = "ipam.spidernet.io/ippool-cidr";
pub const LABEL_SUBNET_CIDR: &str = "ipam.spidernet.io/subnet-cidr";
/// `podAffinity.matchLabels` keys Spiderpool writes into automatic pools; they are matched
/// against the application, not against Pod labels.
pub const AUTO_POOL_AFFINITY_APP_API_GROUP: &str = "ipam.spidernet.io/app-api-group";
pub const AUTO_POOL_AFFINITY_APP_API_VERSION: &str = "ipam.spidernet.io/app-api-version";
pub const AUTO_POOL_AFFINITY_APP_KIND: &str = "ipam.spidernet.io/app-kind";
pub const AUTO_POOL_AFFINITY_APP_NAMESPACE: &str = "ipam.spidernet.io/app-namespace";
pub const AUTO_POOL_AFFINITY_APP_NAME: &str = "ipam.spidernet.io/app-name";
