using QanaEdge.Daemon.Updates;

namespace QanaEdge.Daemon.Tests;

/// <summary>Which update is newer: semantic-versioning precedence, as the update checks use it.</summary>
public class VersionOrderTests
{
    [Fact]
    public void The_semver_example_chain_is_in_increasing_order()
    {
        // semver.org §11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0
        string[] chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.9.0", "1.10.0", "2.0.0"];
        for (int i = 0; i < chain.Length; i++)
            for (int j = 0; j < chain.Length; j++)
                Assert.True(Math.Sign(i.CompareTo(j)) == ModelUpdates.CompareVersions(chain[i], chain[j]), $"{chain[i]} vs {chain[j]}");
    }

    /// <summary>
    /// Learned versions under a pre-release rank just above it and below every version above it, the vendor's next
    /// pre-release by semver §11 included, where numbers rank below text (<c>alpha.1</c> &lt; <c>alpha.learned.1</c> by
    /// §11 alone) and <c>beta</c> below <c>learned</c>; a <c>learned</c> identifier with nothing before it is a plain
    /// pre-release. The order stays total: every pair in the chain compares as its position.
    /// </summary>
    [Fact]
    public void Learned_pre_release_versions_rank_between_their_base_and_the_next_version()
    {
        string[] chain = ["1.0.0-alpha", "1.0.0-alpha.learned.1", "1.0.0-alpha.learned.2", "1.0.0-alpha.learned.10", "1.0.0-alpha.0",
            "1.0.0-alpha.1", "1.0.0-alpha.1.learned.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-learned.1", "1.0.0-rc.1", "1.0.0-rc.1.learned.3", "1.0.0",
            "1.0.0.1", "1.0.1-rc.1", "1.0.1"];
        for (int i = 0; i < chain.Length; i++)
            for (int j = 0; j < chain.Length; j++)
                Assert.True(Math.Sign(i.CompareTo(j)) == ModelUpdates.CompareVersions(chain[i], chain[j]), $"{chain[i]} vs {chain[j]}");
    }

    [Theory]
    [InlineData("1.0.0+build.7", "1.0.0", 0)]
    [InlineData("1.0", "1.0.1", -1)]
    [InlineData("1.0.1-r1", "1.0.0", 1)]
    [InlineData("1.0.1-r1", "1.0.1", -1)]
    public void Build_metadata_is_ignored_and_a_prefix_ranks_lower(string a, string b, int expected)
    {
        Assert.Equal(expected, ModelUpdates.CompareVersions(a, b));
        Assert.Equal(-expected, ModelUpdates.CompareVersions(b, a));
    }

    [Theory]
    [InlineData("1.0.0", "1.0.0.1", "1.0.1")]
    [InlineData("1.0.0.1", "1.0.0.2", "1.0.1")]
    [InlineData("1.0.0.9", "1.0.0.10", "1.0.1")]
    [InlineData("2.3", "2.3.0.1", "2.3.1")]
    [InlineData("1.0.0+build.7", "1.0.0.1", "1.0.1")]
    [InlineData("1.0.1-rc.1", "1.0.1-rc.1.learned.1", "1.0.1-rc.2")]
    [InlineData("1.0.1-rc.1.learned.1", "1.0.1-rc.1.learned.2", "1.0.1")]
    [InlineData("1.0.0-alpha", "1.0.0-alpha.learned.1", "1.0.0-alpha.1")]
    [InlineData("1.0.0-alpha", "1.0.0-alpha.learned.1", "1.0.0-alpha.beta")]
    [InlineData("1.0.0-alpha.learned.9", "1.0.0-alpha.learned.10", "1.0.0-alpha.0")]
    [InlineData("1.0.1-rc.1", "1.0.1-rc.1.learned.1", "1.0.1-rc.1.1")]
    public void A_learned_readout_ranks_above_what_it_learned_on_and_below_the_vendors_next_release(string running, string learned, string vendorNext)
    {
        Assert.Equal(learned, ModelUpdates.LearnedVersion(running));
        Assert.Equal(1, ModelUpdates.CompareVersions(learned, running));
        Assert.Equal(-1, ModelUpdates.CompareVersions(learned, vendorNext));
    }

    /// <summary>
    /// A counter at <see cref="long.MaxValue"/> has no successor: one more wrapped to a negative number, so the learned
    /// version was <c>1.0.0.-9223372036854775808</c>, a pre-release of <c>1.0.0.</c> that no check accepts.
    /// </summary>
    [Theory]
    [InlineData("1.0.0.9223372036854775806", "1.0.0.9223372036854775807")]
    [InlineData("1.0.0.9223372036854775807", null)]
    [InlineData("1.0.1-rc.1.learned.9223372036854775807", null)]
    [InlineData("1.0.0.9223372036854775808", "1.0.0.9223372036854775808.1")]   // no number: a fifth part, off the line
    public void A_counter_at_its_largest_ends_the_learned_line(string running, string? learned)
    {
        Assert.Equal(learned is not null, ModelUpdates.TryLearnedVersion(running, out string? version));
        Assert.Equal(learned, version);
        if (learned is null) Assert.Throws<ArgumentException>(() => ModelUpdates.LearnedVersion(running));
        else Assert.Equal(1, ModelUpdates.CompareVersions(learned, running));
    }

    /// <summary>
    /// A version ends its learned line when it has no learned version above it, or the one above it has none: the
    /// successor of <c>1.0.0.9223372036854775806</c> exists (above), but learning could not go on from it, so an
    /// update of either version is refused, and the device's learning stops at <c>1.0.0.9223372036854775805</c>.
    /// </summary>
    [Theory]
    [InlineData("1.0.0", false)]
    [InlineData("1.0.0.9223372036854775805", false)]
    [InlineData("1.0.0.9223372036854775806", true)]
    [InlineData("1.0.0.9223372036854775807", true)]
    [InlineData("1.0.1-rc.1.learned.9223372036854775805", false)]
    [InlineData("1.0.1-rc.1.learned.9223372036854775806", true)]
    [InlineData("1.0.0.9223372036854775808", false)]   // off the line: a fifth part follows
    public void A_version_ends_its_learned_line_when_learning_could_not_go_on_above_it(string version, bool ends)
        => Assert.Equal(ends, ModelUpdates.EndsLearnedLine(version));

    [Theory]
    [InlineData("1.0.0.1", "1.0.0", true)]
    [InlineData("1.0.0.7", "1.0.0.1", true)]
    [InlineData("2.3.0.1", "2.3", true)]
    [InlineData("1.0.1-rc.1.learned.1", "1.0.1-rc.1", true)]
    [InlineData("1.0.1-rc.1.learned.3", "1.0.1-rc.1.learned.1", true)]
    [InlineData("1.0.1", "1.0.0", false)]            // the vendor's next release
    [InlineData("99.0.0", "1.0.0", false)]           // would make every vendor release a downgrade
    [InlineData("1.0.0.1.1", "1.0.0", false)]
    [InlineData("1.0.1.1", "1.0.0", false)]
    [InlineData("1.0.0.x", "1.0.0", false)]
    [InlineData("1.0.0.1-a", "1.0.0", false)]
    [InlineData("1.0.1-rc.2", "1.0.1-rc.1", false)]
    [InlineData("1.0.1-rc.2.learned.1", "1.0.1-rc.1", false)]
    public void A_learner_key_may_give_only_versions_of_the_learned_line(string version, string running, bool allowed)
    {
        Assert.Equal(allowed, ModelUpdates.IsLearnedLine(version, running));
        if (allowed) Assert.True(ModelUpdates.IsLearnedLine(ModelUpdates.LearnedVersion(running), running));
    }
}
