# The Consul ACL policy of one tsoverlay host: least privilege for its plugin's token.
# Replace @HOST_ID@ with the host's id (its VTEP address, e.g. 198.18.0.11) and @NODE@
# with the node name of the Consul agent its plugin talks to (README: "Cluster store
# layout and ACLs"). Everything under tsoverlay/v1/ is readable; a host writes its own
# records (liveness, endpoints, answers) only under by-host/<its id>/, and the records
# every host shares where every reader checks them. Its liveness session is on its agent.
key_prefix "tsoverlay/v1/"                  { policy = "read" }
key_prefix "tsoverlay/v1/by-host/@HOST_ID@/" { policy = "write" }
key_prefix "tsoverlay/v1/pools/"            { policy = "write" }
key_prefix "tsoverlay/v1/names/"            { policy = "write" }
key_prefix "tsoverlay/v1/addresses/"        { policy = "write" }
key_prefix "tsoverlay/v1/vnis/"             { policy = "write" }
key_prefix "tsoverlay/v1/networks/"         { policy = "write" }
key_prefix "tsoverlay/v1/gone/"             { policy = "write" }
key_prefix "tsoverlay/v1/catalog/"          { policy = "write" }
key_prefix "tsoverlay/v1/asks/"             { policy = "write" }
key        "tsoverlay/v1/layout"            { policy = "write" }
session    "@NODE@"                         { policy = "write" }
