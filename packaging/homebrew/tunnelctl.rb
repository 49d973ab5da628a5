# Homebrew formula for tunnelctl. Builds from source with cargo; the man pages and
# shell completions are written by the freshly built binary (`tunnelctl generate`).
# Not run by CI (no macOS there): CI checks its Ruby syntax only.
class Tunnelctl < Formula
  desc "Keep SSH tunnels alive with the init system you already run"
  homepage "https://github.com/tunnelctl/tunnelctl"
  url "https://github.com/tunnelctl/tunnelctl/archive/refs/tags/v0.1.0.tar.gz"
  # Fill in on release: `shasum -a 256 v0.1.0.tar.gz`.
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/tunnelctl/tunnelctl.git", branch: "main"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args

    system bin/"tunnelctl", "generate", "man", buildpath/"generated/man"
    man1.install buildpath/"generated/man/tunnelctl.1", buildpath/"generated/man/tunnel-watchdog.1"
    man5.install buildpath/"generated/man/tunnels.yaml.5"

    system bin/"tunnelctl", "generate", "completions", buildpath/"generated/completions"
    bash_completion.install buildpath/"generated/completions/tunnelctl.bash" => "tunnelctl"
    zsh_completion.install buildpath/"generated/completions/_tunnelctl"
    fish_completion.install buildpath/"generated/completions/tunnelctl.fish"

    pkgshare.install "examples/tunnels.yaml"
  end

  def caveats
    <<~EOS
      tunnelctl reads ~/.config/tunnelctl/tunnels.yaml. To start from the example:
        mkdir -p ~/.config/tunnelctl
        cp #{opt_pkgshare}/tunnels.yaml ~/.config/tunnelctl/tunnels.yaml
        tunnelctl check

      On macOS each tunnel runs as a launchd job. For your own user (no sudo),
      install it as a LaunchAgent, which starts at login:
        tunnelctl install NAME --target launchd-agent
      It writes ~/Library/LaunchAgents/org.tunnelctl.NAME.plist, loads it with
      `launchctl bootstrap gui/$(id -u)` and logs to ~/Library/Logs/tunnelctl/NAME.log.
      `tunnelctl uninstall NAME --target launchd-agent` removes it again.

      The plist names the watchdog by path. To keep it valid across `brew upgrade`,
      point it at the stable opt path rather than the versioned Cellar:
        tunnelctl install NAME --target launchd-agent --watchdog #{opt_bin}/tunnel-watchdog

      A tunnel that must run without anyone logged in is a LaunchDaemon:
        sudo tunnelctl install NAME --target launchd --watchdog #{opt_bin}/tunnel-watchdog
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/tunnelctl --version")

    (testpath/"tunnels.yaml").write <<~YAML
      tunnels:
        home:
          host: example.org
          forwards:
            - remote: 2222
              to: localhost:22
    YAML
    system bin/"tunnelctl", "--config", testpath/"tunnels.yaml", "check"

    plist = shell_output("#{bin}/tunnelctl --config #{testpath}/tunnels.yaml render home --target launchd-agent")
    assert_match "org.tunnelctl.home", plist
    assert_match "tunnel-watchdog", plist

    # The watchdog refuses a command line without ssh: exit 2, the usage error.
    shell_output("#{bin}/tunnel-watchdog", 2)

    assert_path_exists man1/"tunnelctl.1"
    assert_path_exists man5/"tunnels.yaml.5"
  end
end
