/* STUB: replaced by the redis backend. */
#include "backend.h"
#ifdef KAAL_HAVE_REDIS
const kaal_backend_vtable kaal_backend_redis = {.name = "redis"};
#endif
