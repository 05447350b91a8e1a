/* Everything bindgen binds from DPDK: the shim (which includes the DPDK
 * headers the data plane uses). */
#include "shim/shim.h"
