/*
 * bench_curl_real(url, value [, 1]): the per-row C HTTP client baseline of
 * bench/bench_scalar.py, not part of the product. One blocking keep-alive POST per row with
 * libcurl: the value as a one-line text/csv body, the same Content-Type and Accept headers
 * sqlml sends, and the answer read back as a double. The fake (tests/doubles/fakeaws) wants
 * a SigV4-looking Authorization header but never checks the signature, so with two
 * arguments a fixed dummy one is sent: no signing cost is in that baseline. With a third
 * argument, libcurl signs each request itself (CURLOPT_AWS_SIGV4, libcurl >= 7.75, with a
 * dummy key pair): what signing costs a C client.
 *
 * Build: gcc -O2 -shared -fPIC -Inative -o bench_curl_udf.so bench/c/curl_udf.c -lcurl
 * SQL:   CREATE FUNCTION bench_curl_real RETURNS REAL SONAME 'bench_curl_udf.so';
 *        SELECT SUM(bench_curl_real('http://127.0.0.1:PORT/endpoints/sum-b/invocations', v)) FROM t;
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udf_abi.h" /* native/: the UDF structs, laid out as both servers do */

#define DUMMY_AUTH                                                                         \
  "Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sagemaker/aws4_request, " \
  "SignedHeaders=host, Signature=0"

/* One per statement, on initid->ptr: the easy handle (and so its connection) lives as
 * long as the statement, which is what keeps the connection alive from row to row. */
struct curl_call {
  CURL *curl;
  struct curl_slist *headers;
  char reply[64]; /* the sum endpoint answers one number and a newline */
  size_t reply_len;
};

static size_t keep_reply(char *data, size_t size, size_t n, void *user)
{
  struct curl_call *call = user;
  size_t room = sizeof(call->reply) - 1 - call->reply_len, take = size * n < room ? size * n : room;
  memcpy(call->reply + call->reply_len, data, take);
  call->reply_len += take;
  return size * n; /* a longer answer is cut, then fails to parse as one number */
}

bool bench_curl_real_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
  if (args->arg_count < 2 || args->arg_count > 3 || args->arg_type[0] != UDF_STRING_RESULT || !args->args[0]) {
    snprintf(message, SQLML_ERRMSG_SIZE, "bench_curl_real: call as bench_curl_real('<url>', value [, 1]), url a constant");
    return true;
  }
  args->arg_type[1] = UDF_REAL_RESULT; /* the server converts the value to a double */
  struct curl_call *call = calloc(1, sizeof *call);
  char url[1024];
  snprintf(url, sizeof url, "%.*s", (int)args->lengths[0], args->args[0]);
  if (!call || !(call->curl = curl_easy_init())) {
    free(call);
    snprintf(message, SQLML_ERRMSG_SIZE, "bench_curl_real: out of memory");
    return true;
  }
  call->headers = curl_slist_append(call->headers, "Content-Type: text/csv");
  call->headers = curl_slist_append(call->headers, "Accept: text/csv");
  bool sign = args->arg_count == 3;
  if (!sign)
    call->headers = curl_slist_append(call->headers, DUMMY_AUTH);
  call->headers = curl_slist_append(call->headers, "Expect:");
  curl_easy_setopt(call->curl, CURLOPT_URL, url); /* libcurl copies the string */
  curl_easy_setopt(call->curl, CURLOPT_HTTPHEADER, call->headers);
  curl_easy_setopt(call->curl, CURLOPT_WRITEFUNCTION, keep_reply);
  curl_easy_setopt(call->curl, CURLOPT_WRITEDATA, call);
  curl_easy_setopt(call->curl, CURLOPT_NOSIGNAL, 1L); /* many server threads: no SIGALRM */
  curl_easy_setopt(call->curl, CURLOPT_TIMEOUT, 60L);
  if (sign) {
    curl_easy_setopt(call->curl, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:sagemaker");
    curl_easy_setopt(call->curl, CURLOPT_USERPWD, "AKIDBENCHEXAMPLE:bench/secret/key/not/a/real/one");
  }
  initid->ptr = (char *)call;
  initid->maybe_null = true; /* a failed request is a NULL row, which the bench's checks catch */
  return false;
}

void bench_curl_real_deinit(UDF_INIT *initid)
{
  struct curl_call *call = (struct curl_call *)initid->ptr;
  if (!call)
    return;
  curl_easy_cleanup(call->curl);
  curl_slist_free_all(call->headers);
  free(call);
}

double bench_curl_real(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)
{
  struct curl_call *call = (struct curl_call *)initid->ptr;
  char body[64];
  long status = 0;
  (void)error;
  if (!args->args[1]) {
    *is_null = 1;
    return 0.0;
  }
  int len = snprintf(body, sizeof body, "%.17g\n", *(double *)args->args[1]);
  curl_easy_setopt(call->curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(call->curl, CURLOPT_POSTFIELDSIZE, (long)len);
  call->reply_len = 0;
  if (curl_easy_perform(call->curl) != CURLE_OK ||
      curl_easy_getinfo(call->curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
    *is_null = 1;
    return 0.0;
  }
  call->reply[call->reply_len] = '\0';
  char *end;
  double answer = strtod(call->reply, &end);
  if (end == call->reply || (*end && strcmp(end, "\n") != 0))
    *is_null = 1;
  return answer;
}
