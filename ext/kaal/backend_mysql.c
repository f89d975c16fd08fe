/* STUB: replaced by the mysql backend. */
#include "backend.h"
#ifdef KAAL_HAVE_MYSQL
const kaal_backend_vtable kaal_backend_mysql = {.name = "mysql"};
#endif
