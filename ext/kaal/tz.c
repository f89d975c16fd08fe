/* STUB: replaced by the zone reader. */
#include "tz.h"
