// Loopback TCP baselines over raw libuv: ping-pong and one-way pump (see cbaselines_net.h).
//
// Layout of one run:
//
//   calling thread ── starts ──> server thread (own uv_loop): bind 127.0.0.1:0, listen,
//        │                        post the port, accept one connection, serve it, exit on EOF
//        └─ waits for the port ─> client thread (own uv_loop): connect, drive the benchmark,
//                                 close, exit
//
// Everything one side allocates is freed on that side's thread before it exits.
#include "cbaselines_net.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum bench_kind { BENCH_PINGPONG, BENCH_PUMP };

/// Incremental parser for 4-byte big-endian length-prefixed frames.
typedef struct {
    uint8_t header[4];
    uint32_t header_have;
    uint32_t body_need;   // bytes of the current body still to come (valid once header_have == 4)
    uint8_t *body;        // where bodies are gathered, or NULL to skip them
    uint32_t body_cap;
    uint32_t body_have;
} frame_parser;

typedef struct run_state run_state;

/// One end of the connection: its loop, its stream and its parser.
typedef struct {
    run_state *run;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_tcp_t conn;
    uv_async_t stop;          // server only: the client thread ends, stop waiting for it
    int conn_open;
    int listener_open;
    frame_parser parser;
    uint64_t frames_seen;
    uint64_t frames_sent;
    int writes_in_flight;
    uint8_t read_buffer[65536];   // reads are parsed before the callback returns
} endpoint;

struct run_state {
    enum bench_kind kind;
    uint64_t count;
    uint32_t payload_size;
    uint8_t *payload;          // the payload every frame carries
    endpoint server;
    endpoint client;
    uv_sem_t port_ready;
    int port;                  // bound port, or a negative libuv error
    int error;                 // first error either side met (0 = none)
    uint64_t t_start;
    uint64_t t_end;
    uint64_t *latencies;       // ping-pong: each round trip's nanoseconds, or NULL
    uint64_t last_ping;        // when the ping in flight was sent
};

/// A write request that owns its bytes; freed in the write callback.
typedef struct {
    uv_write_t req;
    endpoint *ep;
    size_t len;
    uint8_t bytes[];
} owned_write;

static void record_error(run_state *run, int err) {
    if (run->error == 0) run->error = err;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t frame_size(const run_state *run) { return 4 + (size_t)run->payload_size; }

static void encode_frame(const run_state *run, uint8_t *dst) {
    put_be32(dst, run->payload_size);
    memcpy(dst + 4, run->payload, run->payload_size);
}

typedef void (*frame_fn)(endpoint *ep, const uint8_t *body, uint32_t len);

/// Feeds `n` bytes to the parser, calling `on_frame` for every complete frame.
static int parse_frames(endpoint *ep, const uint8_t *p, size_t n, frame_fn on_frame) {
    frame_parser *fp = &ep->parser;
    while (n > 0) {
        if (fp->header_have < 4) {
            size_t take = 4 - fp->header_have;
            if (take > n) take = n;
            memcpy(fp->header + fp->header_have, p, take);
            fp->header_have += (uint32_t)take;
            p += take;
            n -= take;
            if (fp->header_have < 4) break;
            fp->body_need = ((uint32_t)fp->header[0] << 24) | ((uint32_t)fp->header[1] << 16)
                          | ((uint32_t)fp->header[2] << 8) | (uint32_t)fp->header[3];
            if (fp->body != NULL && fp->body_need > fp->body_cap) return UV_E2BIG;
            fp->body_have = 0;
        }
        size_t take = fp->body_need;
        if (take > n) take = n;
        if (fp->body != NULL) memcpy(fp->body + fp->body_have, p, take);
        fp->body_have += (uint32_t)take;
        fp->body_need -= (uint32_t)take;
        p += take;
        n -= take;
        if (fp->body_need == 0) {
            fp->header_have = 0;
            on_frame(ep, fp->body, fp->body_have);
        }
    }
    return 0;
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    endpoint *ep = handle->data;
    buf->base = (char *)ep->read_buffer;
    buf->len = sizeof ep->read_buffer;
}

static void on_closed(uv_handle_t *handle) { (void)handle; }

static void close_conn(endpoint *ep) {
    if (ep->conn_open) {
        ep->conn_open = 0;
        uv_close((uv_handle_t *)&ep->conn, on_closed);
    }
}

static void write_done(uv_write_t *req, int status);

/// Writes `len` bytes (already in `w->bytes`) on `ep`'s connection.
static int send_owned(endpoint *ep, owned_write *w) {
    w->ep = ep;
    uv_buf_t buf = uv_buf_init((char *)w->bytes, (unsigned)w->len);
    ep->writes_in_flight++;
    int rc = uv_write(&w->req, (uv_stream_t *)&ep->conn, &buf, 1, write_done);
    if (rc != 0) {
        ep->writes_in_flight--;
        free(w);
    }
    return rc;
}

static owned_write *new_write(size_t len) {
    owned_write *w = malloc(sizeof(owned_write) + len);
    if (w != NULL) w->len = len;
    return w;
}

// MARK: ping-pong

static void pingpong_send_ping(endpoint *client) {
    run_state *run = client->run;
    owned_write *w = new_write(frame_size(run));
    if (w == NULL) { record_error(run, UV_ENOMEM); close_conn(client); return; }
    encode_frame(run, w->bytes);
    if (run->latencies != NULL) run->last_ping = uv_hrtime();
    int rc = send_owned(client, w);
    if (rc != 0) { record_error(run, rc); close_conn(client); }
}

static void server_echo(endpoint *server, const uint8_t *body, uint32_t len) {
    owned_write *w = new_write(4 + (size_t)len);
    if (w == NULL) { record_error(server->run, UV_ENOMEM); close_conn(server); return; }
    put_be32(w->bytes, len);
    memcpy(w->bytes + 4, body, len);
    int rc = send_owned(server, w);
    if (rc != 0) { record_error(server->run, rc); close_conn(server); }
}

static void client_pong(endpoint *client, const uint8_t *body, uint32_t len) {
    (void)body;
    run_state *run = client->run;
    if (len != run->payload_size) { record_error(run, UV_EPROTO); close_conn(client); return; }
    if (run->latencies != NULL) run->latencies[client->frames_seen] = uv_hrtime() - run->last_ping;
    client->frames_seen++;
    if (client->frames_seen == run->count) {
        run->t_end = uv_hrtime();
        close_conn(client);
    } else {
        pingpong_send_ping(client);
    }
}

// MARK: pump

enum { PUMP_BATCH_FRAMES = 1024, PUMP_MAX_IN_FLIGHT = 2 };

static void pump_more(endpoint *client) {
    run_state *run = client->run;
    while (client->conn_open && client->writes_in_flight < PUMP_MAX_IN_FLIGHT
           && client->frames_sent < run->count) {
        uint64_t left = run->count - client->frames_sent;
        size_t batch = left < PUMP_BATCH_FRAMES ? (size_t)left : PUMP_BATCH_FRAMES;
        size_t fsize = frame_size(run);
        owned_write *w = new_write(batch * fsize);
        if (w == NULL) { record_error(run, UV_ENOMEM); close_conn(client); return; }
        for (size_t i = 0; i < batch; i++) encode_frame(run, w->bytes + i * fsize);
        client->frames_sent += batch;
        int rc = send_owned(client, w);
        if (rc != 0) { record_error(run, rc); close_conn(client); return; }
    }
}

static void server_count(endpoint *server, const uint8_t *body, uint32_t len) {
    (void)body;
    (void)len;
    run_state *run = server->run;
    server->frames_seen++;
    if (server->frames_seen == run->count) {
        run->t_end = uv_hrtime();
        close_conn(server);   // the client reads EOF and closes its side
    }
}

// MARK: shared callbacks

static void write_done(uv_write_t *req, int status) {
    owned_write *w = (owned_write *)req;
    endpoint *ep = w->ep;
    free(w);
    ep->writes_in_flight--;
    if (status != 0 && status != UV_ECANCELED) {
        record_error(ep->run, status);
        close_conn(ep);
        return;
    }
    if (ep->run->kind == BENCH_PUMP && ep == &ep->run->client) pump_more(ep);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    endpoint *ep = stream->data;
    run_state *run = ep->run;
    if (nread > 0) {
        frame_fn fn;
        if (ep == &run->server) fn = run->kind == BENCH_PINGPONG ? server_echo : server_count;
        else fn = client_pong;
        int rc = parse_frames(ep, (const uint8_t *)buf->base, (size_t)nread, fn);
        if (rc != 0) { record_error(run, rc); close_conn(ep); }
    } else if (nread < 0) {
        if (nread != UV_EOF) record_error(run, (int)nread);
        close_conn(ep);
    }
}

static void start_conn(endpoint *ep) {
    ep->conn.data = ep;
    ep->conn_open = 1;
    int rc = uv_tcp_nodelay(&ep->conn, 1);
    if (rc == 0) rc = uv_read_start((uv_stream_t *)&ep->conn, alloc_cb, read_cb);
    if (rc != 0) { record_error(ep->run, rc); close_conn(ep); }
}

// MARK: server thread

static void on_connection(uv_stream_t *listener, int status) {
    endpoint *server = listener->data;
    if (status != 0) { record_error(server->run, status); return; }
    if (server->conn_open) return;   // one client per run
    uv_tcp_init(&server->loop, &server->conn);
    server->conn.data = server;
    if (uv_accept(listener, (uv_stream_t *)&server->conn) != 0) {
        uv_close((uv_handle_t *)&server->conn, on_closed);
        return;
    }
    start_conn(server);
    server->listener_open = 0;
    uv_close((uv_handle_t *)&server->listener, on_closed);   // stop accepting
}

/// Runs on the server loop once the client thread has finished: if no client ever connected,
/// stop listening so the server loop can end.
static void on_client_gone(uv_async_t *async) {
    endpoint *server = async->data;
    if (server->listener_open) {
        server->listener_open = 0;
        uv_close((uv_handle_t *)&server->listener, on_closed);
    }
    uv_close((uv_handle_t *)async, on_closed);
}

static void server_main(void *arg) {
    run_state *run = arg;
    endpoint *server = &run->server;
    int rc = uv_loop_init(&server->loop);
    if (rc != 0) { run->port = rc; uv_sem_post(&run->port_ready); return; }
    uv_async_init(&server->loop, &server->stop, on_client_gone);
    server->stop.data = server;
    uv_tcp_init(&server->loop, &server->listener);
    server->listener.data = server;
    server->listener_open = 1;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    rc = uv_tcp_bind(&server->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&server->listener, 8, on_connection);
    if (rc == 0) {
        struct sockaddr_in bound;
        int len = sizeof bound;
        rc = uv_tcp_getsockname(&server->listener, (struct sockaddr *)&bound, &len);
        if (rc == 0) run->port = ntohs(bound.sin_port);
    }
    if (rc != 0) {
        run->port = rc;
        server->listener_open = 0;
        uv_close((uv_handle_t *)&server->listener, on_closed);
        uv_close((uv_handle_t *)&server->stop, on_closed);
    }
    uv_sem_post(&run->port_ready);
    uv_run(&server->loop, UV_RUN_DEFAULT);
    uv_loop_close(&server->loop);
}

// MARK: client thread

static void on_connect(uv_connect_t *req, int status) {
    endpoint *client = req->data;
    run_state *run = client->run;
    free(req);
    if (status != 0) {
        record_error(run, status);
        uv_close((uv_handle_t *)&client->conn, on_closed);
        return;
    }
    start_conn(client);
    if (!client->conn_open) return;
    run->t_start = uv_hrtime();
    if (run->kind == BENCH_PINGPONG) pingpong_send_ping(client);
    else pump_more(client);
}

static void client_main(void *arg) {
    run_state *run = arg;
    endpoint *client = &run->client;
    int rc = uv_loop_init(&client->loop);
    if (rc != 0) { record_error(run, rc); uv_async_send(&run->server.stop); return; }
    uv_tcp_init(&client->loop, &client->conn);
    client->conn.data = client;
    uv_connect_t *req = malloc(sizeof *req);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", run->port, &addr);
    if (req == NULL) rc = UV_ENOMEM;
    else {
        req->data = client;
        rc = uv_tcp_connect(req, &client->conn, (const struct sockaddr *)&addr, on_connect);
    }
    if (rc != 0) {
        free(req);
        record_error(run, rc);
        uv_close((uv_handle_t *)&client->conn, on_closed);
    }
    uv_run(&client->loop, UV_RUN_DEFAULT);
    uv_loop_close(&client->loop);
    uv_async_send(&run->server.stop);
}

// MARK: entry points

static int64_t run_bench(enum bench_kind kind, uint64_t count, uint32_t payload_size, uint64_t *latencies) {
    if (count == 0) return 0;
    run_state *run = calloc(1, sizeof *run);
    if (run == NULL) return UV_ENOMEM;
    run->latencies = latencies;
    run->kind = kind;
    run->count = count;
    run->payload_size = payload_size;
    run->payload = malloc(payload_size > 0 ? payload_size : 1);
    uint8_t *echo_body = malloc(payload_size > 0 ? payload_size : 1);
    if (run->payload == NULL || echo_body == NULL) {
        free(run->payload); free(echo_body); free(run);
        return UV_ENOMEM;
    }
    for (uint32_t i = 0; i < payload_size; i++) run->payload[i] = (uint8_t)(i * 31 + 7);
    run->server.run = run;
    run->client.run = run;
    if (kind == BENCH_PINGPONG) {
        // The server gathers each body to echo it; the client only checks the length.
        run->server.parser.body = echo_body;
        run->server.parser.body_cap = payload_size;
    }

    int64_t result;
    uv_thread_t server_thread, client_thread;
    if (uv_sem_init(&run->port_ready, 0) != 0) { result = UV_ENOMEM; goto out; }
    if (uv_thread_create(&server_thread, server_main, run) != 0) {
        uv_sem_destroy(&run->port_ready);
        result = UV_EAGAIN;
        goto out;
    }
    uv_sem_wait(&run->port_ready);
    if (run->port < 0) {
        uv_thread_join(&server_thread);
        result = run->port;
    } else {
        // Without a second thread the client runs on the calling thread.
        if (uv_thread_create(&client_thread, client_main, run) == 0) uv_thread_join(&client_thread);
        else client_main(run);
        uv_thread_join(&server_thread);
        if (run->error != 0) result = run->error;
        else if (run->t_end < run->t_start) result = UV_EPROTO;
        else result = (int64_t)(run->t_end - run->t_start);
    }
    uv_sem_destroy(&run->port_ready);
out:
    free(echo_body);
    free(run->payload);
    free(run);
    return result;
}

int64_t cbaselines_net_pingpong(uint64_t round_trips, uint32_t payload_size) {
    return run_bench(BENCH_PINGPONG, round_trips, payload_size, NULL);
}

int64_t cbaselines_net_pingpong_latencies(uint64_t round_trips, uint32_t payload_size, uint64_t *latencies_ns) {
    return run_bench(BENCH_PINGPONG, round_trips, payload_size, latencies_ns);
}

int64_t cbaselines_net_pump(uint64_t frames, uint32_t payload_size) {
    return run_bench(BENCH_PUMP, frames, payload_size, NULL);
}
