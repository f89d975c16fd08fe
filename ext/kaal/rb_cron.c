/* STUB: replaced by the cron binding. */
#include "rb_kaal.h"
void kaal_init_cron(void) {}
