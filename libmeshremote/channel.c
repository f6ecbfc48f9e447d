/* SPDX-License-Identifier: MIT */
/* Channels on ports: mpsc, oneshot and rpc. (Being written.) */
#include "remote-private.h"
