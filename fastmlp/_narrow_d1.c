/* The narrow steps' double instances with chunks of 1 vector(s) (see
 * _narrow.h): a unit of their own, compiled beside the Cython module's. */
#define FMN_IMPLEMENT 'd'
#define FMN_NV 1
#define FMP_DECLARATIONS_ONLY
#include "_narrow.h"
