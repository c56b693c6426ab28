export { describeBinding, formatAddress, validateBinding, type Binding, type Proto, type ProxyProtocolVersion } from "./binding.js";
export { newCounters, type ProxyCounters } from "./counters.js";
export { listenError, listenTcp, listenUdp, type BoundListener, type ListenAddress } from "./listener.js";
export { expandPortRange, type PortRangePlan, type PortRangeSpec } from "./port-range.js";
export { bindingId, ProxyManager, type ActiveBinding, type ProxyManagerOptions } from "./proxy-manager.js";
export { encodeProxyHeader, encodeV1, encodeV2, endpointsOf, PROXY_V2_SIGNATURE, type ConnectionEndpoints } from "./proxy-header.js";
export { ReadBufferPool } from "./read-buffers.js";
export { TcpProxy, type TcpProxyOptions } from "./tcp-proxy.js";
export { MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, UdpProxy, type UdpProxyOptions } from "./udp-proxy.js";
