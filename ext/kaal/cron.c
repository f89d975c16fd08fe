/* STUB: replaced by the cron engine. */
#include "cron.h"
