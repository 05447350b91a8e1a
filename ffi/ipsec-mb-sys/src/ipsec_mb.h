/* Intel ipsec-mb (Debian libipsec-mb-dev). */
#include <stdint.h>
#include <stddef.h>
#include <intel-ipsec-mb.h>
