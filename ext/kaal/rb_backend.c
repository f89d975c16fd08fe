/* STUB: replaced by the backend binding. */
#include "rb_kaal.h"
void kaal_init_backend(void) {}
