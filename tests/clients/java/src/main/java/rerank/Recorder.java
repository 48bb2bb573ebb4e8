// A pass-through HTTP server on 127.0.0.1: every request goes to the target as it came (method,
// path, query, headers, body) and its answer comes back as it came; the last answer's status
// and body are kept for Driver to print.
package rerank;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.Map;
import java.util.Set;

final class Recorder {
  static final Set<String> HOP = Set.of("connection", "content-length", "expect", "host", "upgrade", "transfer-encoding", "keep-alive");
  final HttpServer server;
  final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  volatile Integer status;
  volatile byte[] body;

  Recorder(String target) throws IOException {
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext("/", exchange -> {
      try {
        byte[] sent = exchange.getRequestBody().readAllBytes();
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(target + exchange.getRequestURI()))
            .method(exchange.getRequestMethod(), sent.length == 0 ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofByteArray(sent));
        for (Map.Entry<String, List<String>> header : exchange.getRequestHeaders().entrySet()) {
          if (!HOP.contains(header.getKey().toLowerCase())) {
            for (String value : header.getValue()) {
              request.header(header.getKey(), value);
            }
          }
        }
        HttpResponse<byte[]> answer = http.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
        for (Map.Entry<String, List<String>> header : answer.headers().map().entrySet()) {
          if (!HOP.contains(header.getKey().toLowerCase()) && !header.getKey().startsWith(":")) {
            exchange.getResponseHeaders().put(header.getKey(), header.getValue());
          }
        }
        byte[] got = answer.body();
        status = answer.statusCode();
        body = got;
        boolean empty = got.length == 0 || exchange.getRequestMethod().equals("HEAD");
        exchange.sendResponseHeaders(answer.statusCode(), empty ? -1 : got.length);
        if (!empty) {
          try (OutputStream out = exchange.getResponseBody()) {
            out.write(got);
          }
        }
      } catch (InterruptedException exc) {
        Thread.currentThread().interrupt();
        exchange.sendResponseHeaders(502, -1);
      } finally {
        exchange.close();
      }
    });
    server.start();
  }

  String url() {
    return "http://127.0.0.1:" + server.getAddress().getPort();
  }

  void stop() {
    server.stop(0);
  }
}
